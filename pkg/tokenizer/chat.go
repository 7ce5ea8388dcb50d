package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ardanlabs/jinja"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string
	Content string
}

// chatTemplate is a compiled template plus the special-token variables
// Hugging Face passes to it.
type chatTemplate struct {
	tmpl *jinja.Template
	vars map[string]string // bos_token, eos_token, … (absent when null)
}

// tokenizerConfig is the subset of tokenizer_config.json we read.
type tokenizerConfig struct {
	ChatTemplate json.RawMessage `json:"chat_template"`
	BOS          json.RawMessage `json:"bos_token"`
	EOS          json.RawMessage `json:"eos_token"`
	PAD          json.RawMessage `json:"pad_token"`
	UNK          json.RawMessage `json:"unk_token"`
}

// loadChatTemplate reads the template from chat_template.jinja, else from
// tokenizer_config.json; it returns nil, nil when there is none.
func loadChatTemplate(dir string) (*chatTemplate, error) {
	var cfg tokenizerConfig
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("tokenizer: %w", err)
	default:
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer: parse tokenizer_config.json: %w", err)
		}
	}
	src, err := templateSource(dir, cfg.ChatTemplate)
	if err != nil || src == "" {
		return nil, err
	}
	tmpl, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadChatTemplate, err)
	}
	ct := &chatTemplate{tmpl: tmpl, vars: map[string]string{}}
	for name, raw := range map[string]json.RawMessage{
		"bos_token": cfg.BOS, "eos_token": cfg.EOS, "pad_token": cfg.PAD, "unk_token": cfg.UNK,
	} {
		tok, ok, err := specialTokenContent(raw)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: tokenizer_config.json %s: %w", name, err)
		}
		if ok {
			ct.vars[name] = tok
		}
	}
	return ct, nil
}

func templateSource(dir string, inConfig json.RawMessage) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja"))
	if err == nil {
		return string(data), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("tokenizer: %w", err)
	}
	if len(inConfig) == 0 || string(inConfig) == "null" {
		return "", nil
	}
	var src string
	if json.Unmarshal(inConfig, &src) == nil {
		return src, nil
	}
	// Several named templates: the unnamed chat uses "default".
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(inConfig, &named); err != nil {
		return "", fmt.Errorf("%w: chat_template is neither a string nor a list: %w", ErrBadChatTemplate, err)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", fmt.Errorf("%w: chat_template list has no \"default\"", ErrBadChatTemplate)
}

// specialTokenContent reads a special token given as a string or as an
// AddedToken object {"content": ...}; ok is false for null or absent.
func specialTokenContent(raw json.RawMessage) (string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", false, fmt.Errorf("%w: expected a string or {\"content\": ...}", ErrBadChatTemplate)
	}
	return *obj.Content, true, nil
}

// HasChatTemplate reports whether ApplyChatTemplate can be used.
func (t *Tokenizer) HasChatTemplate() bool { return t.chat != nil }

// WithClock returns a tokenizer that shares t's tables but whose chat
// templates see now() through strftime_now (tests pin the date with it).
func (t *Tokenizer) WithClock(now func() time.Time) *Tokenizer {
	c := *t
	c.now = now
	return &c
}

// ApplyChatTemplate renders msgs as Hugging Face's apply_chat_template does
// with tokenize=False. Encode the result with addSpecial false: templates
// write BOS themselves.
func (t *Tokenizer) ApplyChatTemplate(msgs []Message, addGenerationPrompt bool) (string, error) {
	if t.chat == nil {
		return "", ErrNoChatTemplate
	}
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		// Built by hand so that keys keep Python's insertion order (tojson).
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	data := map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"add_generation_prompt": jinja.NewBool(addGenerationPrompt),
		"strftime_now":          jinja.NewCallable("strftime_now", t.strftimeNow),
	}
	for k, v := range t.chat.vars {
		data[k] = jinja.NewString(v)
	}
	out, err := t.chat.tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("tokenizer: render chat template: %w", err)
	}
	return out, nil
}

func (t *Tokenizer) strftimeNow(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 1 || !args[0].IsString() {
		return jinja.Undefined(), fmt.Errorf("strftime_now: expected one format string")
	}
	return jinja.NewString(strftime(t.now(), args[0].AsString())), nil
}
