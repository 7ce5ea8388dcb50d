package tokenizer

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/lorafleet/lorafleet/internal/golden"
)

var tinyModels = golden.Sets

func tinyDir(model string) string { return filepath.Join("..", "..", "testdata", model, "model") }

// readGolden reads the set's golden.json, computed by Hugging Face transformers.
func readGolden(t testing.TB, model string) *golden.File {
	t.Helper()
	g, err := golden.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.TokenizerCases) == 0 || len(g.ChatCases) == 0 {
		t.Fatalf("%s: golden.json has no tokenizer or chat cases", model)
	}
	return g
}

func loadTokenizer(t testing.TB, dir string) *Tokenizer {
	t.Helper()
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkEncodeDecode compares Encode with and without special tokens, and Decode of the
// latter, with a reference's outputs.
func checkEncodeDecode(t *testing.T, tok *Tokenizer, text string, ids, idsNoSpecial []int, decoded string) {
	t.Helper()
	if got := tok.Encode(text, true); !slices.Equal(got, ids) {
		t.Errorf("Encode(%q, true)\n got %v\nwant %v", text, got, ids)
	}
	if got := tok.Encode(text, false); !slices.Equal(got, idsNoSpecial) {
		t.Errorf("Encode(%q, false)\n got %v\nwant %v", text, got, idsNoSpecial)
	}
	if got := tok.Decode(idsNoSpecial, false); got != decoded {
		t.Errorf("Decode(%v) = %q, want %q", idsNoSpecial, got, decoded)
	}
}

func TestGoldenEncodeDecode(t *testing.T) {
	for _, model := range tinyModels {
		t.Run(model, func(t *testing.T) {
			tok := loadTokenizer(t, tinyDir(model))
			for _, c := range readGolden(t, model).TokenizerCases {
				checkEncodeDecode(t, tok, c.Text, c.IDs, c.IDsNoSpecial, c.Decoded)
				if got := tok.Decode(tok.Encode(c.Text, false), false); got != c.Text {
					t.Errorf("Decode(Encode(%q)) = %q", c.Text, got)
				}
			}
		})
	}
}

func TestGoldenChat(t *testing.T) {
	for _, model := range tinyModels {
		t.Run(model, func(t *testing.T) {
			tok := loadTokenizer(t, tinyDir(model))
			if !tok.HasChatTemplate() {
				t.Fatal("no chat template")
			}
			for _, c := range readGolden(t, model).ChatCases {
				msgs := make([]Message, len(c.Messages))
				for i, m := range c.Messages {
					msgs[i] = Message{Role: m.Role, Content: m.Content}
				}
				text, err := tok.ApplyChatTemplate(msgs, c.AddGenerationPrompt)
				if err != nil {
					t.Fatal(err)
				}
				if text != c.Text {
					t.Errorf("ApplyChatTemplate\n got %q\nwant %q", text, c.Text)
				}
				if got := tok.Encode(text, false); !slices.Equal(got, c.IDs) {
					t.Errorf("Encode(chat)\n got %v\nwant %v", got, c.IDs)
				}
			}
		})
	}
}

// streamDecode decodes ids one by one, checking that no chunk is invalid
// UTF-8 (which would mean half a character was emitted).
func streamDecode(t *testing.T, tok *Tokenizer, ids []int, skipSpecial bool) string {
	t.Helper()
	d := tok.NewStreamDecoder(skipSpecial)
	var out string
	for _, id := range ids {
		chunk := d.Add(id)
		if !utf8.ValidString(chunk) {
			t.Fatalf("chunk %q after id %d is not valid UTF-8", chunk, id)
		}
		out += chunk
	}
	return out + d.Flush()
}

func TestGoldenStreamDecode(t *testing.T) {
	for _, model := range tinyModels {
		tok := loadTokenizer(t, tinyDir(model))
		for _, c := range readGolden(t, model).TokenizerCases {
			for _, skip := range []bool{false, true} {
				want := tok.Decode(c.IDs, skip)
				if got := streamDecode(t, tok, c.IDs, skip); got != want {
					t.Errorf("%s: stream decode of %q (skip %v) = %q, want %q", model, c.Text, skip, got, want)
				}
			}
		}
	}
}

// Tokenizers are shared by request goroutines; run with -race.
func TestConcurrentEncode(t *testing.T) {
	tok := loadTokenizer(t, tinyDir("tiny-llama"))
	cases := readGolden(t, "tiny-llama").TokenizerCases
	errs := make(chan string, 4*len(cases))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, c := range cases {
				if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
					errs <- c.Text
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for text := range errs {
		t.Errorf("concurrent Encode(%q) differs from golden", text)
	}
}
