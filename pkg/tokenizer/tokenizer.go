// Package tokenizer reads Hugging Face tokenizer.json files for byte-level
// BPE models (Llama 3, Qwen2/3, GPT-2 style), encodes and decodes text with
// the same ids as Hugging Face tokenizers, and renders chat templates.
package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer encodes and decodes text. It is safe for concurrent use.
type Tokenizer struct {
	model     *bpe
	rawAdded  *addedMatcher // added tokens matched in the raw text
	normAdded *addedMatcher // normalized:true added tokens, matched after normalization
	nfc       bool          // normalizer: NFC
	pre       *preTokenizer
	prefix    []int            // post-processor ids before the text (BOS)
	suffix    []int            // post-processor ids after the text
	idBytes   []string         // decoded bytes of each id ("" for holes)
	special   []bool           // special added tokens, skipped on request when decoding
	addedIDs  map[string]int   // added token content → id
	chat      *chatTemplate    // nil without a chat template
	now       func() time.Time // clock for strftime_now; see WithClock
}

// Load reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
// and dir/chat_template.jinja for special tokens and the chat template.
func Load(dir string) (*Tokenizer, error) {
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	t.chat, err = loadChatTemplate(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return t, nil
}

// FromJSON builds a tokenizer from the contents of a tokenizer.json. The
// result has no chat template; use Load for that.
func FromJSON(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: parse tokenizer.json: %w", err)
	}
	t := &Tokenizer{now: time.Now}
	v, err := t.buildVocab(&f)
	if err != nil {
		return nil, err
	}
	if t.model, err = newBPE(&f.Model, v); err != nil {
		return nil, err
	}
	if err := t.buildPipeline(&f); err != nil {
		return nil, err
	}
	return t, nil
}

// buildVocab fills the per-id tables and returns the vocabulary for the
// BPE model.
func (t *Tokenizer) buildVocab(f *fileJSON) (vocab, error) {
	type entry struct {
		tok string
		id  int
	}
	var entries []entry
	if err := scanVocab(f.Model.Vocab, func(tok string, id int) {
		entries = append(entries, entry{tok, id})
	}); err != nil {
		return vocab{}, fmt.Errorf("tokenizer: model vocab is not an object of token ids: %w", err)
	}
	size := 0
	for _, e := range entries {
		if e.id < 0 || e.id >= maxTokenID {
			return vocab{}, fmt.Errorf("%w: vocab %q id %d", ErrBadID, e.tok, e.id)
		}
		size = max(size, e.id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxTokenID {
			return vocab{}, fmt.Errorf("%w: added token %q id %d", ErrBadID, a.Content, a.ID)
		}
		size = max(size, a.ID+1)
	}
	t.idBytes = make([]string, size)
	t.special = make([]bool, size)
	set := make([]bool, size)
	v := vocab{byRaw: make(map[string]int, len(entries)), byText: map[string]int{}}
	var buf []byte
	for _, e := range entries {
		var raw string
		if b, ok := appendByteLevelDecode(buf[:0], e.tok); ok {
			raw, buf = string(b), b
			v.byRaw[raw] = e.id
		} else {
			raw = e.tok
			v.byText[raw] = e.id
		}
		// Two tokens for one id: decode to the smaller, deterministically.
		if !set[e.id] || raw < t.idBytes[e.id] {
			set[e.id], t.idBytes[e.id] = true, raw
		}
	}
	t.addAddedTokens(f.AddedTokens)
	return v, nil
}

// addAddedTokens records added tokens, which override vocabulary entries
// with the same id when decoding.
func (t *Tokenizer) addAddedTokens(added []addedToken) {
	t.addedIDs = make(map[string]int, len(added))
	for _, a := range added {
		if a.Content == "" {
			continue
		}
		t.addedIDs[a.Content] = a.ID
		t.special[a.ID] = a.Special
		// The ByteLevel decoder also runs over added tokens; contents
		// outside its alphabet keep their own bytes.
		if raw, ok := appendByteLevelDecode(nil, a.Content); ok {
			t.idBytes[a.ID] = string(raw)
		} else {
			t.idBytes[a.ID] = a.Content
		}
	}
}

// buildPipeline sets up added-token matching, normalizer, pre-tokenizer,
// post-processor and decoder.
func (t *Tokenizer) buildPipeline(f *fileJSON) error {
	var err error
	if t.nfc, err = newNormalizer(f.Normalizer); err != nil {
		return err
	}
	var raw, normalized []addedToken
	for _, a := range f.AddedTokens {
		if a.Normalized {
			if t.nfc {
				a.Content = norm.NFC.String(a.Content)
			}
			normalized = append(normalized, a)
		} else {
			raw = append(raw, a)
		}
	}
	t.rawAdded, t.normAdded = newAddedMatcher(raw), newAddedMatcher(normalized)
	if len(f.PreTokenizer) == 0 || string(f.PreTokenizer) == "null" {
		return fmt.Errorf("%w: pre_tokenizer null (byte-level BPE needs ByteLevel)", ErrUnsupported)
	}
	if t.pre, err = newPreTokenizer(f.PreTokenizer); err != nil {
		return err
	}
	if t.prefix, t.suffix, err = newPostProcessor(f.PostProcessor); err != nil {
		return err
	}
	for _, id := range append(append([]int(nil), t.prefix...), t.suffix...) {
		if id < 0 || id >= len(t.idBytes) {
			return fmt.Errorf("%w: post_processor id %d", ErrBadID, id)
		}
	}
	return checkDecoder(f.Decoder)
}

// Encode returns the ids of text. Added and special tokens written in the
// text are always recognised; addSpecial applies the post-processor (for
// Llama 3, a leading BOS).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids := make([]int, 0, len(text)/3+len(t.prefix)+len(t.suffix)+1)
	if addSpecial {
		ids = append(ids, t.prefix...)
	}
	for _, seg := range t.rawAdded.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		ids = t.encodeSegment(ids, seg.text)
	}
	if addSpecial {
		ids = append(ids, t.suffix...)
	}
	return ids
}

// encodeSegment encodes text that holds no raw-matched added token.
func (t *Tokenizer) encodeSegment(ids []int, s string) []int {
	if t.nfc {
		s = norm.NFC.String(s)
	}
	for _, seg := range t.normAdded.split(s) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		for _, word := range t.pre.split(seg.text) {
			ids = t.model.appendWord(ids, word)
		}
	}
	return ids
}

// VocabSize is one more than the largest id, added tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.idBytes) }

// TokenID looks a token up as it is written in tokenizer.json (added token
// content, or vocabulary entry in the byte-level alphabet such as "Ġthe").
func (t *Tokenizer) TokenID(s string) (int, bool) {
	if id, ok := t.addedIDs[s]; ok {
		return id, true
	}
	id, _, ok := t.model.vocab.lookup(nil, s, "")
	return id, ok
}

// IsSpecial reports whether id is a special added token (BOS, EOS, chat
// markers); out-of-range ids are not.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}
