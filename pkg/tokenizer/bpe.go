package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Word cache limits, as in Hugging Face tokenizers: pre-tokens are short and
// repeat a lot, so a bounded map that stops growing when full is enough.
const (
	wordCacheCapacity = 10000
	wordCacheMaxLen   = 256
)

// bpe is a byte-level BPE model. Everything is keyed by raw bytes rather
// than by the byte-level alphabet, so pre-tokens never need converting.
type bpe struct {
	vocab        vocab
	byteID       [256]int         // token of each single byte, -1 if absent
	merges       map[uint64]merge // (left id, right id) → merge
	ignoreMerges bool             // a pre-token found in the vocabulary is emitted whole
	unk          int              // unknown-byte token, -1 for none (bytes are dropped)
	fuseUnk      bool             // consecutive unknown bytes become one unk token
	cache        wordCache        // pre-token → ids
	scratch      sync.Pool        // *mergeState, reused across words
}

// vocab holds the vocabulary in the two forms lookups need.
type vocab struct {
	byRaw  map[string]int // tokens in the byte-level alphabet, by their raw bytes
	byText map[string]int // other tokens (unreachable by BPE), by their text
}

// lookup finds the token a+b written as in tokenizer.json (b is "" for a
// single token); buf is scratch space, returned for reuse.
func (v *vocab) lookup(buf []byte, a, b string) (int, []byte, bool) {
	buf, okA := appendByteLevelDecode(buf[:0], a)
	buf, okB := appendByteLevelDecode(buf, b)
	if okA && okB {
		id, found := v.byRaw[string(buf)]
		return id, buf, found
	}
	id, found := v.byText[a+b]
	return id, buf, found
}

type merge struct {
	rank int32 // lower merges first
	id   int32 // token the pair becomes
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func newBPE(m *modelJSON, v vocab) (*bpe, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b := &bpe{vocab: v, ignoreMerges: m.IgnoreMerges, unk: -1, fuseUnk: m.FuseUnk}
	for i := range b.byteID {
		b.byteID[i] = -1
		if id, ok := v.byRaw[string([]byte{byte(i)})]; ok {
			b.byteID[i] = id
		}
	}
	if m.UnkToken != nil {
		id, _, ok := v.lookup(nil, *m.UnkToken, "")
		if !ok {
			return nil, fmt.Errorf("%w: unk_token %q", ErrNotInVocab, *m.UnkToken)
		}
		b.unk = id
	}
	if err := b.readMerges(m.Merges); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bpe) readMerges(raw json.RawMessage) error {
	b.merges = make(map[uint64]merge, len(raw)/16)
	var buf []byte
	err := scanMerges(raw, func(rank int, left, right string) error {
		var l, r, n int
		var okL, okR, okN bool
		l, buf, okL = b.vocab.lookup(buf, left, "")
		r, buf, okR = b.vocab.lookup(buf, right, "")
		n, buf, okN = b.vocab.lookup(buf, left, right)
		if !okL || !okR || !okN {
			return fmt.Errorf("%w: merge %d (%q %q)", ErrNotInVocab, rank, left, right)
		}
		// Later duplicates win, as when Hugging Face collects merges into a map.
		b.merges[pairKey(l, r)] = merge{rank: int32(rank), id: int32(n)}
		return nil
	})
	if errors.Is(err, errJSONShape) {
		return fmt.Errorf("%w: merges are neither \"a b\" strings nor [a, b] pairs", ErrBadMerges)
	}
	return err
}

// splitMerge splits the older "a b" form of a merge.
func splitMerge(line string) (string, string, error) {
	a, b, ok := strings.Cut(line, " ")
	if !ok || strings.Contains(b, " ") {
		return "", "", fmt.Errorf("%w: merge %q is not two space-separated tokens", ErrBadMerges, line)
	}
	return a, b, nil
}

// appendWord appends the ids of one pre-token (raw bytes).
func (b *bpe) appendWord(dst []int, word string) []int {
	if ids, ok := b.cache.get(word); ok {
		return append(dst, ids...)
	}
	start := len(dst)
	if id, ok := b.vocab.byRaw[word]; ok && b.ignoreMerges {
		dst = append(dst, id)
	} else {
		dst = b.mergeWord(dst, word)
	}
	if len(word) <= wordCacheMaxLen {
		b.cache.put(word, dst[start:])
	}
	return dst
}

// symbol is one token of a word being merged; words are doubly linked lists
// so that a merge is O(1).
type symbol struct {
	id         int
	prev, next int // neighbour indexes, -1 at the ends
	dead       bool
}

type mergeState struct {
	syms []symbol
	heap mergeHeap
}

// mergeWord applies merges lowest rank first, leftmost first among equal
// ranks (Hugging Face's order), using a heap: O(n log n) in the word length.
func (b *bpe) mergeWord(dst []int, word string) []int {
	st, _ := b.scratch.Get().(*mergeState)
	if st == nil {
		st = &mergeState{}
	}
	defer b.scratch.Put(st)
	st.syms = b.initialSymbols(st.syms[:0], word)
	syms := st.syms
	st.heap = st.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		b.pushPair(&st.heap, syms, i)
	}
	for len(st.heap) > 0 {
		top := st.heap.pop()
		s := &syms[top.pos]
		if s.dead || s.next < 0 {
			continue
		}
		r := &syms[s.next]
		if m, ok := b.merges[pairKey(s.id, r.id)]; !ok || m.id != top.id {
			continue // stale: a neighbour changed since this pair was queued
		}
		s.id = int(top.id)
		r.dead = true
		s.next = r.next
		if s.next >= 0 {
			syms[s.next].prev = int(top.pos)
		}
		if s.prev >= 0 {
			b.pushPair(&st.heap, syms, s.prev)
		}
		b.pushPair(&st.heap, syms, int(top.pos))
	}
	for _, s := range syms {
		if !s.dead {
			dst = append(dst, s.id)
		}
	}
	return dst
}

func (b *bpe) pushPair(h *mergeHeap, syms []symbol, i int) {
	j := syms[i].next
	if j < 0 {
		return
	}
	if m, ok := b.merges[pairKey(syms[i].id, syms[j].id)]; ok {
		h.push(mergeItem{rank: m.rank, pos: int32(i), id: m.id})
	}
}

// initialSymbols turns each byte into its token. Bytes without a token
// become the unk token (fused if configured) or are dropped, as Hugging
// Face does when there is no unk token.
func (b *bpe) initialSymbols(syms []symbol, word string) []symbol {
	inUnk := false // the previous byte was unknown and became unk
	for i := 0; i < len(word); i++ {
		id := b.byteID[word[i]]
		if id < 0 {
			if b.unk < 0 || (inUnk && b.fuseUnk) {
				continue
			}
			id = b.unk
			inUnk = true
		} else {
			inUnk = false
		}
		syms = append(syms, symbol{id: id, prev: len(syms) - 1, next: len(syms) + 1})
	}
	if n := len(syms); n > 0 {
		syms[n-1].next = -1
	}
	return syms
}

type mergeItem struct {
	rank, pos, id int32
}

func (a mergeItem) less(b mergeItem) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// mergeHeap is a binary min-heap; hand-rolled to avoid container/heap's
// interface boxing on the hot path.
type mergeHeap []mergeItem

func (h *mergeHeap) push(x mergeItem) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() mergeItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && s[l].less(s[m]) {
			m = l
		}
		if r := l + 1; r < n && s[r].less(s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// wordCache maps pre-tokens to ids. It stops growing when full, so memory
// stays bounded whatever text is encoded.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int
}

func (c *wordCache) get(word string) ([]int, bool) {
	c.mu.RLock()
	ids, ok := c.m[word]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(word string, ids []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string][]int)
	}
	if len(c.m) < wordCacheCapacity {
		c.m[strings.Clone(word)] = append([]int(nil), ids...)
	}
}
