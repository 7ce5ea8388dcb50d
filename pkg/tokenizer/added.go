package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// segment is a piece of text, or an added token when id >= 0.
type segment struct {
	text string
	id   int
}

// addedMatcher finds added tokens in text, leftmost-longest, like the
// Aho-Corasick automaton Hugging Face builds. A byte trie is enough: the
// tokens are few and short.
type addedMatcher struct {
	nodes []trieNode
	toks  []addedToken
	first [256]bool // bytes that start some token: a fast pre-check
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index in toks of the token ending here, -1 if none
}

func newAddedMatcher(toks []addedToken) *addedMatcher {
	m := &addedMatcher{nodes: []trieNode{{tok: -1}}}
	for _, tk := range toks {
		if tk.Content == "" {
			continue // Hugging Face ignores empty added tokens
		}
		m.first[tk.Content[0]] = true
		n := int32(0)
		for i := 0; i < len(tk.Content); i++ {
			c := tk.Content[i]
			child, ok := m.nodes[n].next[c]
			if !ok {
				child = int32(len(m.nodes))
				m.nodes = append(m.nodes, trieNode{tok: -1})
				if m.nodes[n].next == nil {
					m.nodes[n].next = map[byte]int32{}
				}
				m.nodes[n].next[c] = child
			}
			n = child
		}
		m.nodes[n].tok = int32(len(m.toks)) // a later duplicate wins
		m.toks = append(m.toks, tk)
	}
	return m
}

// longestAt returns the longest token starting at s[i:], or -1.
func (m *addedMatcher) longestAt(s string, i int) (tok, end int) {
	tok, n := -1, int32(0)
	for j := i; j < len(s); j++ {
		child, ok := m.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = child
		if t := m.nodes[n].tok; t >= 0 {
			tok, end = int(t), j+1
		}
	}
	return tok, end
}

// split cuts s into text and added-token segments, applying single_word,
// lstrip and rstrip the way Hugging Face's AddedVocabulary::find_matches does.
func (m *addedMatcher) split(s string) []segment {
	if len(m.toks) == 0 {
		return []segment{{text: s, id: -1}}
	}
	var segs []segment
	done := 0 // s[:done] is already in segs
	for i := 0; i < len(s); {
		if !m.first[s[i]] {
			i++
			continue
		}
		tok, end := m.longestAt(s, i)
		if tok < 0 {
			i++
			continue
		}
		start, stop, ok := m.toks[tok].extent(s, i, end)
		i = end
		if !ok {
			continue
		}
		// An rstrip may have swallowed the start of this match; the token
		// still counts, starting where the previous one ended.
		start = max(start, done)
		if done < start {
			segs = append(segs, segment{text: s[done:start], id: -1})
		}
		segs = append(segs, segment{id: m.toks[tok].ID})
		done = max(stop, done)
	}
	if done < len(s) || len(segs) == 0 {
		segs = append(segs, segment{text: s[done:], id: -1})
	}
	return segs
}

// extent widens the match s[start:stop] over surrounding whitespace for
// lstrip/rstrip; ok is false when single_word rejects it.
func (t *addedToken) extent(s string, start, stop int) (int, int, bool) {
	if t.SingleWord {
		before, _ := utf8.DecodeLastRuneInString(s[:start])
		after, _ := utf8.DecodeRuneInString(s[stop:])
		if (start > 0 && isWordRune(before)) || (stop < len(s) && isWordRune(after)) {
			return 0, 0, false
		}
	}
	if t.LStrip {
		for start > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:start])
			if !unicode.IsSpace(r) {
				break
			}
			start -= size
		}
	}
	if t.RStrip {
		for stop < len(s) {
			r, size := utf8.DecodeRuneInString(s[stop:])
			if !unicode.IsSpace(r) {
				break
			}
			stop += size
		}
	}
	return start, stop, true
}

// isWordRune is the Unicode \w of Rust's regex crate.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) ||
		unicode.In(r, unicode.Nl, unicode.Pc) || r == '\u200c' || r == '\u200d'
}
