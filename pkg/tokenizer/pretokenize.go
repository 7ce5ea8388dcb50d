package tokenizer

import (
	"encoding/json"
	"fmt"

	"github.com/dlclark/regexp2/v2"
)

// gpt2Pattern is what ByteLevel splits with when use_regex is true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// preTokenizer cuts normalized text into the pre-tokens BPE runs on. It is
// a chain of stages, each applied to every piece the previous one produced.
type preTokenizer struct {
	stages []splitStage
}

type splitStage struct {
	re          *regexp2.Regexp // matches and the gaps between them become pieces; nil keeps the piece
	prefixSpace bool            // ByteLevel add_prefix_space: prepend " " to pieces not starting with one
}

type preTokenizerJSON struct {
	Type           string            `json:"type"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Pattern        *patternJSON      `json:"pattern"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace *bool             `json:"add_prefix_space"` // default true, as in Hugging Face
	UseRegex       *bool             `json:"use_regex"`        // default true, as in Hugging Face
}

type patternJSON struct {
	Regex  *string `json:"Regex"`
	String *string `json:"String"`
}

// newPreTokenizer accepts Split{Isolated} stages ending in exactly one
// ByteLevel, alone or in a Sequence.
func newPreTokenizer(raw json.RawMessage) (*preTokenizer, error) {
	var top preTokenizerJSON
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("tokenizer: pre_tokenizer: %w", err)
	}
	items := []json.RawMessage{raw}
	if top.Type == "Sequence" {
		items = top.Pretokenizers
	}
	p := &preTokenizer{}
	for i, item := range items {
		var pt preTokenizerJSON
		if err := json.Unmarshal(item, &pt); err != nil {
			return nil, fmt.Errorf("tokenizer: pre_tokenizer %d: %w", i, err)
		}
		last := i == len(items)-1
		st, err := newStage(&pt, last)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer %d: %w", i, err)
		}
		p.stages = append(p.stages, st)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: pre_tokenizer without ByteLevel", ErrUnsupported)
	}
	return p, nil
}

func newStage(pt *preTokenizerJSON, last bool) (splitStage, error) {
	switch {
	case pt.Type == "ByteLevel" && last:
		st := splitStage{prefixSpace: pt.AddPrefixSpace == nil || *pt.AddPrefixSpace}
		if pt.UseRegex == nil || *pt.UseRegex {
			st.re = regexp2.MustCompile(gpt2Pattern, regexOptions...)
		}
		return st, nil
	case pt.Type == "ByteLevel":
		return splitStage{}, fmt.Errorf("%w: ByteLevel must be the last pre_tokenizer", ErrUnsupported)
	case pt.Type == "Split":
		if last {
			return splitStage{}, fmt.Errorf("%w: pre_tokenizer without ByteLevel", ErrUnsupported)
		}
		return newSplitStage(pt)
	default:
		return splitStage{}, fmt.Errorf("%w: pre_tokenizer type %q", ErrUnsupported, pt.Type)
	}
}

// regexOptions lifts regexp2's backtracking stack cap: long runs of letters
// or spaces are legitimate input and must not fail to split.
var regexOptions = []regexp2.CompileOption{regexp2.OptionMaxBacktrackingStackSize(-1)}

func newSplitStage(pt *preTokenizerJSON) (splitStage, error) {
	if pt.Behavior != "Isolated" || pt.Invert {
		return splitStage{}, fmt.Errorf("%w: Split behavior %q invert %v (only Isolated, invert false)",
			ErrUnsupported, pt.Behavior, pt.Invert)
	}
	var expr string
	switch {
	case pt.Pattern == nil:
		return splitStage{}, fmt.Errorf("%w: Split without pattern", ErrUnsupported)
	case pt.Pattern.Regex != nil:
		expr = *pt.Pattern.Regex
	case pt.Pattern.String != nil:
		expr = regexp2.Escape(*pt.Pattern.String)
	default:
		return splitStage{}, fmt.Errorf("%w: Split pattern is neither Regex nor String", ErrUnsupported)
	}
	re, err := regexp2.Compile(expr, regexOptions...)
	if err != nil {
		return splitStage{}, fmt.Errorf("%w: Split regex %q: %w", ErrUnsupported, expr, err)
	}
	return splitStage{re: re}, nil
}

// split returns the pre-tokens of s, empty ones dropped.
func (p *preTokenizer) split(s string) []string {
	pieces := []string{s}
	for _, st := range p.stages {
		next := make([]string, 0, len(pieces))
		for _, piece := range pieces {
			if st.prefixSpace && piece != "" && piece[0] != ' ' {
				piece = " " + piece
			}
			next = st.appendPieces(next, piece)
		}
		pieces = next
	}
	return pieces
}

// appendPieces appends the matches of st.re in s and the non-empty gaps
// between them (Hugging Face's Isolated behaviour).
func (st *splitStage) appendPieces(dst []string, s string) []string {
	if s == "" {
		return dst
	}
	if st.re == nil {
		return append(dst, s)
	}
	// Without a match timeout regexp2 cannot fail; should it ever, the
	// piece stays whole rather than being lost.
	locs, err := st.re.FindAllStringIndex(s, -1)
	if err != nil {
		return append(dst, s)
	}
	prev := 0
	for _, loc := range locs {
		if loc[0] > prev {
			dst = append(dst, s[prev:loc[0]])
		}
		if loc[1] > loc[0] {
			dst = append(dst, s[loc[0]:loc[1]])
		}
		prev = loc[1]
	}
	if prev < len(s) {
		dst = append(dst, s[prev:])
	}
	return dst
}
