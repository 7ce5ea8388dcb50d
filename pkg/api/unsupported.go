package api

import (
	"bytes"
	"encoding/json"
	"maps"
)

// Fields that OpenAI, vLLM or LoRAX define and this server does not
// implement. A client that sends one with a value asking for something
// (suffix "x", tools [...]) gets a 400 naming it instead of a silently
// different answer; null, or the value that asks for nothing, passes.
// Fields no such server knows are ignored, as vLLM ignores them.

// asksNothing reports whether a raw value requests nothing.
type asksNothing func(raw []byte) bool

func nullOr(literals ...string) asksNothing {
	return func(raw []byte) bool {
		raw = bytes.TrimSpace(raw)
		if string(raw) == "null" {
			return true
		}
		for _, l := range literals {
			if string(raw) == l {
				return true
			}
		}
		return false
	}
}

// emptyOr accepts null and an empty array or object, whatever its spacing.
func emptyOr(open, close byte) asksNothing {
	return func(raw []byte) bool {
		raw = bytes.TrimSpace(raw)
		if string(raw) == "null" {
			return true
		}
		return len(raw) >= 2 && raw[0] == open && raw[len(raw)-1] == close &&
			len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
	}
}

var (
	isFalse     = nullOr("false")
	isTrue      = nullOr("true")
	emptyString = nullOr(`""`)
	emptyArray  = emptyOr('[', ']')
	emptyObject = emptyOr('{', '}')
	noTools     = nullOr(`"none"`, `"auto"`)
)

func isOne(raw []byte) bool {
	var n float64
	return isNull(raw) || (json.Unmarshal(raw, &n) == nil && n == 1)
}

func textFormat(raw []byte) bool {
	var f struct {
		Type string `json:"type"`
	}
	return isNull(raw) || (json.Unmarshal(raw, &f) == nil && f.Type == "text")
}

func textModality(raw []byte) bool {
	var m []string
	return isNull(raw) || (json.Unmarshal(raw, &m) == nil && len(m) == 1 && m[0] == "text")
}

// vLLM sampling and output extras shared by both OpenAI endpoints.
var sharedUnsupported = map[string]asksNothing{
	"use_beam_search":               isFalse,
	"response_format":               textFormat,
	"structured_outputs":            isNull,
	"guided_json":                   isNull,
	"guided_regex":                  isNull,
	"guided_choice":                 isNull,
	"guided_grammar":                isNull,
	"logits_processors":             emptyArray,
	"prompt_logprobs":               isNull,
	"allowed_token_ids":             isNull,
	"bad_words":                     emptyArray,
	"include_stop_str_in_output":    isFalse,
	"truncate_prompt_tokens":        isNull,
	"skip_special_tokens":           isTrue,
	"spaces_between_special_tokens": isTrue,
}

var completionUnsupported = with(sharedUnsupported, map[string]asksNothing{
	"suffix":             emptyString,
	"best_of":            isOne,
	"prompt_embeds":      isNull,
	"add_special_tokens": isTrue,
})

// Chat-template knobs also appear on /tokenize with messages.
var templateUnsupported = map[string]asksNothing{
	"tools":                  emptyArray,
	"continue_final_message": isFalse,
	"chat_template":          isNull,
	"chat_template_kwargs":   emptyObject,
	"documents":              isNull,
}

var chatUnsupported = with(with(sharedUnsupported, templateUnsupported), map[string]asksNothing{
	"tool_choice":           noTools,
	"functions":             emptyArray,
	"function_call":         noTools,
	"audio":                 isNull,
	"modalities":            textModality,
	"prediction":            isNull,
	"web_search_options":    isNull,
	"echo":                  isFalse,
	"add_generation_prompt": isTrue,
	"add_special_tokens":    isFalse,
	"logprob_token_ids":     isNull,
})

// LoRAX GenerateParameters this server does not implement.
var generateUnsupported = map[string]asksNothing{
	"best_of":               isOne,
	"typical_p":             isNull,
	"watermark":             isFalse,
	"truncate":              isNull,
	"return_k_alternatives": isNull,
	"merged_adapters":       isNull,
	"response_format":       isNull,
	"apply_chat_template":   isFalse,
	"top_n_tokens":          isNull,
}

func with(a, b map[string]asksNothing) map[string]asksNothing {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

// checkUnsupported refuses the first member that table lists and whose
// value asks for something; prefix is prepended to the reported param.
func checkUnsupported(members []member, table map[string]asksNothing, prefix string) error {
	for _, m := range members {
		var ok asksNothing
		var listed bool
		if bytes.IndexByte(m.key, '\\') < 0 {
			ok, listed = table[string(m.key)] // no allocation
		} else {
			ok, listed = table[keyString(m.key)]
		}
		if listed && !ok(m.val) {
			name := keyString(m.key)
			return BadRequest(prefix+name, "`%s` is not supported by this server", name)
		}
	}
	return nil
}
