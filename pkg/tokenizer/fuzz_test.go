package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

func FuzzFromJSON(f *testing.F) {
	for _, model := range tinyModels {
		data, err := os.ReadFile(filepath.Join(tinyDir(model), "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(handMadeJSON(f, nil))
	f.Add(handMadeJSON(f, func(m map[string]any) { unkVocab(m, true) }))
	f.Add(handMadeJSON(f, func(m map[string]any) { model(m)["merges"] = [][]string{{"h", "e"}} }))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a\u00e9\ud83d\ude00\\\"": 0}, "merges": null},
		"pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := FromJSON(data)
		if err != nil {
			return
		}
		ids := tok.Encode("Hello wörld 123 <s> <|eot_id|>  \n😀", true)
		tok.Decode(ids, true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode produced id %d outside [0, %d)", id, tok.VocabSize())
			}
		}
	})
}

func FuzzEncode(f *testing.F) {
	var toks []*Tokenizer
	for _, model := range tinyModels {
		toks = append(toks, loadTokenizer(f, tinyDir(model)))
		for _, c := range readGolden(f, model).TokenizerCases {
			f.Add(c.Text)
		}
	}
	for _, s := range []string{"", "<|eot_id|><|eot_id", "\xF0\x9F", "  \t\n\r\n x", "DON'T 's", "e\u0301 \U0001F469\u200d\U0001F467"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			ids := tok.Encode(s, true)
			want := tok.Decode(ids[1:], false) // without BOS
			if utf8.ValidString(s) && want != s {
				t.Fatalf("Decode(Encode(%q)) = %q", s, want)
			}
			d := tok.NewStreamDecoder(false)
			var got string
			for _, id := range ids[1:] {
				chunk := d.Add(id)
				if !utf8.ValidString(chunk) {
					t.Fatalf("stream chunk %q is not valid UTF-8", chunk)
				}
				got += chunk
			}
			if got += d.Flush(); got != want {
				t.Fatalf("stream decode %q != Decode %q", got, want)
			}
		}
	})
}
