package tokenizer

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// A hand-made byte-level tokenizer: byte b has id b, then a few merges, so
// expected ids can be worked out by hand.
//
//	256 "he" (h e)   257 "ll" (l l)   258 "hell" (he ll)
//	259 "hello"      260 "Ġhello"     261 "xyz" (no merges)
//	300 "<s>" special   301 "<L>" lstrip   302 "<R>" rstrip
//	303 "sw" single_word   304 "<s>x"   305 "é" normalized
func handMadeJSON(t testing.TB, edit func(f map[string]any)) []byte {
	t.Helper()
	vocab := map[string]any{}
	for b := 0; b < 256; b++ {
		vocab[gpt2Char(byte(b))] = b
	}
	for i, tok := range []string{"he", "ll", "hell", "hello", "Ġhello", "xyz"} {
		vocab[tok] = 256 + i
	}
	added := []map[string]any{
		{"id": 300, "content": "<s>", "special": true},
		{"id": 301, "content": "<L>", "lstrip": true},
		{"id": 302, "content": "<R>", "rstrip": true},
		{"id": 303, "content": "sw", "single_word": true},
		{"id": 304, "content": "<s>x"},
		{"id": 305, "content": "\u00e9", "normalized": true},
	}
	f := map[string]any{
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "ByteLevel"},
		"model": map[string]any{
			"type": "BPE", "vocab": vocab,
			"merges": []string{"h e", "l l", "he ll", "hell o", "Ġ hello"},
		},
	}
	if edit != nil {
		edit(f)
	}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// gpt2Char is GPT-2's bytes_to_unicode, written out independently.
func gpt2Char(b byte) string {
	if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE {
		return string(rune(b))
	}
	n := 0
	for c := 0; c < int(b); c++ {
		if !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE) {
			n++
		}
	}
	return string(rune(256 + n))
}

func model(f map[string]any) map[string]any { return f["model"].(map[string]any) }

func handMade(t *testing.T, edit func(f map[string]any)) *Tokenizer {
	t.Helper()
	tok, err := FromJSON(handMadeJSON(t, edit))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEncodeHandMade(t *testing.T) {
	tok := handMade(t, nil)
	cases := []struct {
		text string
		want []int
	}{
		{"hello", []int{259}},
		{"hello hello", []int{259, 260}},
		{"hell", []int{258}},
		{"hex", []int{256, 'x'}},
		{"xyz", []int{'x', 'y', 'z'}},
		{"a<s>b", []int{'a', 300, 'b'}},
		{"<s>x", []int{304}},              // longest added token wins
		{"a  <L>b", []int{'a', 301, 'b'}}, // lstrip swallows the spaces
		{"a<R>  b", []int{'a', 302, 'b'}}, // rstrip too
		{"a  <R>b", []int{'a', ' ', ' ', 302, 'b'}},
		{"a sw b", []int{'a', ' ', 303, ' ', 'b'}},
		{"aswb", []int{'a', 's', 'w', 'b'}}, // single_word: inside a word it is text
		{"\u00e9", []int{305}},
		{"e\u0301", []int{'e', 0xCC, 0x81}}, // no normalizer: no match
		{"", []int{}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text, true); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

func TestEncodeOptions(t *testing.T) {
	cases := []struct {
		name string
		edit func(f map[string]any)
		text string
		want []int
	}{
		{"NFC normalizer matches normalized added tokens", func(f map[string]any) {
			f["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}}}
		}, "e\u0301", []int{305}},
		{"add_prefix_space", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true}
		}, "hello", []int{260}},
		{"ignore_merges", func(f map[string]any) { model(f)["ignore_merges"] = true }, "xyz", []int{261}},
		{"merges as pairs", func(f map[string]any) {
			model(f)["merges"] = [][]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}}
		}, "hello hello", []int{259, ' ', 259}},
		{"Split then ByteLevel", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Isolated", "invert": false},
				map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
			}}
		}, "hello hello", []int{259, ' ', 259}},
		{"unk fused", func(f map[string]any) { unkVocab(f, true) }, "zzhe", []int{262, 256}},
		{"unk not fused", func(f map[string]any) { unkVocab(f, false) }, "zz", []int{262, 262}},
		{"no unk drops unknown bytes", func(f map[string]any) { delete(model(f)["vocab"].(map[string]any), "z") }, "zhez", []int{256}},
		{"template adds BOS and EOS", func(f map[string]any) {
			f["post_processor"] = map[string]any{"type": "Sequence", "processors": []any{
				map[string]any{"type": "ByteLevel"},
				map[string]any{"type": "TemplateProcessing",
					"single": []any{
						map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
						map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
						map[string]any{"SpecialToken": map[string]any{"id": "<R>", "type_id": 0}},
					},
					"special_tokens": map[string]any{
						"<s>": map[string]any{"id": "<s>", "ids": []int{300}},
						"<R>": map[string]any{"id": "<R>", "ids": []int{302}},
					}},
			}}
		}, "hello", []int{300, 259, 302}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := handMade(t, c.edit)
			if got := tok.Encode(c.text, true); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
			}
		})
	}
}

// unkVocab removes byte "z" and adds "<unk>" as id 262.
func unkVocab(f map[string]any, fuse bool) {
	m := model(f)
	v := m["vocab"].(map[string]any)
	delete(v, "z")
	v["<unk>"] = 262
	m["unk_token"] = "<unk>"
	m["fuse_unk"] = fuse
}

func TestFromJSONErrors(t *testing.T) {
	cases := []struct {
		name     string
		edit     func(f map[string]any)
		sentinel error
		mention  string
	}{
		{"normalizer", func(f map[string]any) { f["normalizer"] = map[string]any{"type": "NFKC"} }, ErrUnsupported, "NFKC"},
		{"pre_tokenizer", func(f map[string]any) { f["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, ErrUnsupported, "Metaspace"},
		{"no pre_tokenizer", func(f map[string]any) { f["pre_tokenizer"] = nil }, ErrUnsupported, "pre_tokenizer"},
		{"split behavior", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "a"}, "behavior": "Removed"},
				map[string]any{"type": "ByteLevel"},
			}}
		}, ErrUnsupported, "Removed"},
		{"bad regex", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(a"}, "behavior": "Isolated"},
				map[string]any{"type": "ByteLevel"},
			}}
		}, ErrUnsupported, "(a"},
		{"post_processor", func(f map[string]any) { f["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, ErrUnsupported, "RobertaProcessing"},
		{"decoder", func(f map[string]any) { f["decoder"] = map[string]any{"type": "Metaspace"} }, ErrUnsupported, "Metaspace"},
		{"model", func(f map[string]any) { model(f)["type"] = "WordPiece" }, ErrUnsupported, "WordPiece"},
		{"byte_fallback", func(f map[string]any) { model(f)["byte_fallback"] = true }, ErrUnsupported, "byte_fallback"},
		{"merge out of vocab", func(f map[string]any) { model(f)["merges"] = []string{"q q"} }, ErrNotInVocab, "q"},
		{"malformed merge", func(f map[string]any) { model(f)["merges"] = []string{"h e l"} }, ErrBadMerges, "h e l"},
		{"merges not a list", func(f map[string]any) { model(f)["merges"] = 3 }, ErrBadMerges, "merges"},
		{"negative id", func(f map[string]any) { model(f)["vocab"].(map[string]any)["neg"] = -1 }, ErrBadID, "neg"},
		{"huge id", func(f map[string]any) { model(f)["vocab"].(map[string]any)["big"] = 1 << 40 }, ErrBadID, "big"},
		{"unknown unk", func(f map[string]any) { model(f)["unk_token"] = "<nope>" }, ErrNotInVocab, "<nope>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromJSON(handMadeJSON(t, c.edit))
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.mention) {
				t.Errorf("err = %v, want %v mentioning %q", err, c.sentinel, c.mention)
			}
		})
	}
	if _, err := FromJSON([]byte("{not json")); err == nil {
		t.Error("FromJSON accepted invalid JSON")
	}
}

func TestDecodeHandMade(t *testing.T) {
	tok := handMade(t, nil)
	if got := tok.Decode([]int{-1, 300, 259, 1 << 30, 260}, false); got != "<s>hello hello" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.Decode([]int{300, 259, 301}, true); got != "hello<L>" {
		t.Errorf("Decode(skip special) = %q, want only <s> skipped", got)
	}
	if tok.VocabSize() != 306 {
		t.Errorf("VocabSize = %d, want 306", tok.VocabSize())
	}
	for s, want := range map[string]int{"Ġhello": 260, "<s>": 300, "Ġ": ' '} {
		if id, ok := tok.TokenID(s); !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", s, id, ok, want)
		}
	}
	if _, ok := tok.TokenID("nope"); ok {
		t.Error("TokenID found a token that does not exist")
	}
	if !tok.IsSpecial(300) || tok.IsSpecial(301) || tok.IsSpecial(-1) || tok.IsSpecial(1<<30) {
		t.Error("IsSpecial wrong")
	}
}

// Byte ids are the bytes themselves in the hand-made tokenizer, so invalid
// UTF-8 can be decoded directly. Expected replacements follow the Unicode
// standard's table 3-8 ("maximal subparts"), as Python and Rust do.
func TestDecodeInvalidUTF8(t *testing.T) {
	tok := handMade(t, nil)
	bytesToIDs := func(b string) []int {
		ids := make([]int, len(b))
		for i := range len(b) {
			ids[i] = int(b[i])
		}
		return ids
	}
	cases := map[string]string{
		"a\xF1\x80\x80\xE1\x80\xC2b\x80c\x80\xBFd": "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd",
		"\xF0\x9F\x98":     "\uFFFD",
		"\xED\xA0\x80":     "\uFFFD\uFFFD\uFFFD", // surrogate
		"\xC0\xAF":         "\uFFFD\uFFFD",       // overlong
		"\xF0\x9F\x98\x80": "\U0001F600",
	}
	for in, want := range cases {
		ids := bytesToIDs(in)
		if got := tok.Decode(ids, false); got != want {
			t.Errorf("Decode(% x) = %q, want %q", in, got, want)
		}
		if got := streamDecode(t, tok, ids, false); got != want {
			t.Errorf("stream decode(% x) = %q, want %q", in, got, want)
		}
	}
}

func TestStreamDecoderHoldsPartialCharacters(t *testing.T) {
	tok := handMade(t, nil)
	d := tok.NewStreamDecoder(false)
	var chunks []string
	for _, id := range []int{'a', 0xF0, 0x9F, 0x98, 0x80, 0xE4, 0xB8} {
		chunks = append(chunks, d.Add(id))
	}
	chunks = append(chunks, d.Flush())
	want := []string{"a", "", "", "", "\U0001F600", "", "", "\uFFFD"}
	if !slices.Equal(chunks, want) {
		t.Errorf("chunks = %q, want %q", chunks, want)
	}
	// A byte that cannot continue the pending character flushes it at once.
	d = tok.NewStreamDecoder(false)
	if got := d.Add(0xE4) + d.Add('x'); got != "\uFFFDx" {
		t.Errorf("got %q, want replacement then x", got)
	}
}
