package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors; match them with errors.Is.
var (
	ErrUnsupported     = errors.New("tokenizer: unsupported")
	ErrNotInVocab      = errors.New("tokenizer: token not in vocabulary")
	ErrBadMerges       = errors.New("tokenizer: malformed merges")
	ErrBadID           = errors.New("tokenizer: token id out of range")
	ErrNoChatTemplate  = errors.New("tokenizer: no chat template")
	ErrBadChatTemplate = errors.New("tokenizer: malformed chat template")
)

// maxTokenID bounds ids so that a corrupt file cannot make us allocate
// per-id tables of arbitrary size; real vocabularies stay under 300k.
const maxTokenID = 1 << 20

// fileJSON is the subset of tokenizer.json that we read. Each component is
// kept raw and parsed by its builder, which rejects what it does not know.
type fileJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         modelJSON       `json:"model"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	UnkToken                *string         `json:"unk_token"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
}

func (m *modelJSON) validate() error {
	switch {
	case m.Type != "BPE":
		return fmt.Errorf("%w: model type %q (only BPE)", ErrUnsupported, m.Type)
	case m.ByteFallback:
		return fmt.Errorf("%w: BPE byte_fallback", ErrUnsupported)
	case m.Dropout != nil && *m.Dropout != 0:
		return fmt.Errorf("%w: BPE dropout %v", ErrUnsupported, *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return fmt.Errorf("%w: BPE continuing_subword_prefix %q", ErrUnsupported, *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return fmt.Errorf("%w: BPE end_of_word_suffix %q", ErrUnsupported, *m.EndOfWordSuffix)
	}
	return nil
}

// typed reads the "type" of a component; ok is false for null or absent.
func typed(raw json.RawMessage, what string) (typ string, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", false, fmt.Errorf("tokenizer: %s: %w", what, err)
	}
	return t.Type, true, nil
}

// newNormalizer reports whether text is NFC-normalized: the normalizer must
// be null, NFC, or a Sequence of those.
func newNormalizer(raw json.RawMessage) (nfc bool, err error) {
	typ, ok, err := typed(raw, "normalizer")
	if err != nil || !ok {
		return false, err
	}
	switch typ {
	case "NFC":
		return true, nil
	case "Sequence":
		var seq struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &seq); err != nil {
			return false, fmt.Errorf("tokenizer: normalizer: %w", err)
		}
		for _, n := range seq.Normalizers {
			sub, err := newNormalizer(n)
			if err != nil {
				return false, err
			}
			nfc = nfc || sub
		}
		return nfc, nil
	default:
		return false, fmt.Errorf("%w: normalizer type %q", ErrUnsupported, typ)
	}
}

type postProcessorJSON struct {
	Type          string            `json:"type"`
	Processors    []json.RawMessage `json:"processors"`
	Single        []templatePiece   `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
}

type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// newPostProcessor returns the ids added around a single sequence when
// special tokens are requested. TemplateProcessing and ByteLevel (which
// only adjusts offsets) are understood, alone or in a Sequence.
func newPostProcessor(raw json.RawMessage) (prefix, suffix []int, err error) {
	typ, ok, err := typed(raw, "post_processor")
	if err != nil || !ok {
		return nil, nil, err
	}
	var pp postProcessorJSON
	if err := json.Unmarshal(raw, &pp); err != nil {
		return nil, nil, fmt.Errorf("tokenizer: post_processor: %w", err)
	}
	switch typ {
	case "ByteLevel":
		return nil, nil, nil
	case "TemplateProcessing":
		return pp.template()
	case "Sequence":
		for _, sub := range pp.Processors {
			p, s, err := newPostProcessor(sub)
			if err != nil {
				return nil, nil, err
			}
			// A later processor wraps the output of the earlier ones.
			prefix = append(p, prefix...)
			suffix = append(suffix, s...)
		}
		return prefix, suffix, nil
	default:
		return nil, nil, fmt.Errorf("%w: post_processor type %q", ErrUnsupported, typ)
	}
}

// template splits the single-sequence template around its one "A".
func (pp *postProcessorJSON) template() (prefix, suffix []int, err error) {
	seenA := false
	for _, piece := range pp.Single {
		switch {
		case piece.Sequence != nil:
			if piece.Sequence.ID != "A" || seenA {
				return nil, nil, fmt.Errorf("%w: TemplateProcessing single sequence %q", ErrUnsupported, piece.Sequence.ID)
			}
			seenA = true
		case piece.SpecialToken != nil:
			tok, ok := pp.SpecialTokens[piece.SpecialToken.ID]
			if !ok {
				return nil, nil, fmt.Errorf("%w: TemplateProcessing special token %q", ErrNotInVocab, piece.SpecialToken.ID)
			}
			if seenA {
				suffix = append(suffix, tok.IDs...)
			} else {
				prefix = append(prefix, tok.IDs...)
			}
		default:
			return nil, nil, fmt.Errorf("%w: TemplateProcessing piece is neither SpecialToken nor Sequence", ErrUnsupported)
		}
	}
	if !seenA {
		return nil, nil, fmt.Errorf("%w: TemplateProcessing single without sequence A", ErrUnsupported)
	}
	return prefix, suffix, nil
}

// checkDecoder accepts only the ByteLevel decoder, which Decode implements.
func checkDecoder(raw json.RawMessage) error {
	typ, ok, err := typed(raw, "decoder")
	if err != nil {
		return err
	}
	if !ok || typ != "ByteLevel" {
		return fmt.Errorf("%w: decoder type %q (only ByteLevel)", ErrUnsupported, typ)
	}
	return nil
}
