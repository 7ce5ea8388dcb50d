package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chatDir makes a model directory with the tiny Llama tokenizer.json and the
// given tokenizer_config.json and chat_template.jinja ("" = no such file).
func chatDir(t *testing.T, config, jinjaFile string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(tinyDir("tiny-llama"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"tokenizer.json": string(data), "tokenizer_config.json": config, "chat_template.jinja": jinjaFile}
	for name, content := range files {
		if content == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var hi = []Message{{Role: "user", Content: "hi"}}

func TestChatTemplateSources(t *testing.T) {
	cases := []struct {
		name, config, jinja, want string
	}{
		{"string in config", `{"chat_template": "A{{ bos_token }}{{ eos_token }}", "bos_token": "<s>", "eos_token": "</s>"}`, "", "A<s></s>"},
		{"AddedToken objects", `{"chat_template": "B{{ bos_token }}", "bos_token": {"content": "<s>", "lstrip": false}}`, "", "B<s>"},
		{"named list", `{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages[0].content }}"}]}`, "", "Dhi"},
		{"jinja file wins", `{"chat_template": "config"}`, "file{{ add_generation_prompt }}", "fileTrue"},
		{"null bos is undefined", `{"chat_template": "[{{ bos_token }}]", "bos_token": null}`, "", "[]"},
		{"no config", "", "J", "J"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := loadTokenizer(t, chatDir(t, c.config, c.jinja))
			got, err := tok.ApplyChatTemplate(hi, true)
			if err != nil || got != c.want {
				t.Errorf("ApplyChatTemplate = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestChatTemplateErrors(t *testing.T) {
	tok := loadTokenizer(t, chatDir(t, `{"bos_token": "<s>"}`, ""))
	if tok.HasChatTemplate() {
		t.Error("HasChatTemplate without a template")
	}
	if _, err := tok.ApplyChatTemplate(hi, true); !errors.Is(err, ErrNoChatTemplate) {
		t.Errorf("err = %v, want ErrNoChatTemplate", err)
	}
	for name, config := range map[string]string{
		"list without default": `{"chat_template": [{"name": "x", "template": "X"}]}`,
		"not a template":       `{"chat_template": 3}`,
		"bad bos":              `{"chat_template": "x", "bos_token": 3}`,
		"bad syntax":           `{"chat_template": "{% if %}"}`,
	} {
		if _, err := Load(chatDir(t, config, "")); !errors.Is(err, ErrBadChatTemplate) {
			t.Errorf("%s: err = %v, want ErrBadChatTemplate", name, err)
		}
	}
	if _, err := Load(chatDir(t, "{", "")); err == nil {
		t.Error("Load accepted a malformed tokenizer_config.json")
	}
	tok = loadTokenizer(t, chatDir(t, "", "{{ raise_exception('no ' + messages[0].role + ' turns') }}"))
	if _, err := tok.ApplyChatTemplate(hi, false); err == nil || !strings.Contains(err.Error(), "no user turns") {
		t.Errorf("raise_exception: err = %v", err)
	}
}

func TestStrftimeNow(t *testing.T) {
	tok := loadTokenizer(t, chatDir(t, "", "{{ strftime_now(messages[0].content) }}"))
	// Friday 7 March 2025, day 66 of the year.
	tok = tok.WithClock(func() time.Time { return time.Date(2025, 3, 7, 14, 4, 5, 0, time.UTC) })
	cases := map[string]string{
		"%d %b %Y":          "07 Mar 2025",
		"%Y-%m-%d %H:%M:%S": "2025-03-07 14:04:05",
		"%-d %B %A %a":      "7 March Friday Fri",
		"%I%p %j %y %%":     "02PM 066 25 %",
		"%Q %":              "%Q %",
	}
	for format, want := range cases {
		got, err := tok.ApplyChatTemplate([]Message{{Role: "user", Content: format}}, false)
		if err != nil || got != want {
			t.Errorf("strftime_now(%q) = %q, %v; want %q", format, got, err, want)
		}
	}
}

// Templates serialise messages with tojson; keys must keep Python's
// insertion order and separators.
func TestChatMessagesToJSON(t *testing.T) {
	tok := loadTokenizer(t, chatDir(t, "", "{{ messages[0] | tojson }}"))
	got, err := tok.ApplyChatTemplate(hi, false)
	if want := `{"role": "user", "content": "hi"}`; err != nil || got != want {
		t.Errorf("tojson = %q, %v; want %q", got, err, want)
	}
}
