package api

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
)

// PromptForm is which of the four shapes OpenAI allows a prompt came in.
type PromptForm uint8

const (
	PromptNone       PromptForm = iota // absent or null
	PromptString                       // "text"
	PromptStrings                      // ["text", …] (also an empty array)
	PromptTokens                       // [1, 2, 3]
	PromptTokenLists                   // [[1, 2], [3]]
)

// Prompt is the prompt of a completion request. Strings holds the text
// prompts (one for PromptString), Tokens the token-id prompts (one for
// PromptTokens); it re-encodes in the form it was decoded from.
type Prompt struct {
	Form    PromptForm
	Strings []string
	Tokens  [][]int
}

// TextPrompt is a single text prompt.
func TextPrompt(s string) Prompt { return Prompt{Form: PromptString, Strings: []string{s}} }

// TokenPrompt is a single prompt of token ids.
func TokenPrompt(ids []int) Prompt { return Prompt{Form: PromptTokens, Tokens: [][]int{ids}} }

// Len is the number of prompts (each gets n choices).
func (p Prompt) Len() int { return len(p.Strings) + len(p.Tokens) }

func (p Prompt) jsonShape() string {
	return "a string, an array of strings, an array of token ids or an array of arrays of token ids"
}

// MarshalJSON writes the prompt in its form.
func (p Prompt) MarshalJSON() ([]byte, error) {
	switch p.Form {
	case PromptString:
		if len(p.Strings) == 1 {
			return marshalPlain(p.Strings[0])
		}
	case PromptStrings:
		return marshalPlain(nonNil(p.Strings))
	case PromptTokens:
		if len(p.Tokens) == 1 {
			return marshalPlain(nonNil(p.Tokens[0]))
		}
	case PromptTokenLists:
		lists := make([][]int, len(p.Tokens))
		for i, l := range p.Tokens {
			lists[i] = nonNil(l)
		}
		return marshalPlain(lists)
	}
	return []byte("null"), nil
}

// UnmarshalJSON accepts the four forms; the first element of an array
// decides which array form it is.
func (p *Prompt) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	var q Prompt
	var err error
	switch {
	case isNull(data):
	case len(data) > 0 && data[0] == '"':
		q.Form, q.Strings = PromptString, make([]string, 1)
		err = unquote(data, &q.Strings[0])
	case len(data) > 0 && data[0] == '[':
		err = q.unmarshalArray(data)
	default:
		return shapeError(data, reflect.TypeFor[Prompt](), nil)
	}
	if err != nil {
		return shapeError(data, reflect.TypeFor[Prompt](), err)
	}
	*p = q
	return nil
}

func (p *Prompt) unmarshalArray(data []byte) error {
	first := bytes.TrimSpace(data[1:])
	switch {
	case len(first) == 0:
		return shapeError(data, reflect.TypeFor[Prompt](), nil)
	case first[0] == ']' || first[0] == '"':
		p.Form = PromptStrings
		return json.Unmarshal(data, &p.Strings)
	case bytes.IndexByte(data, 'n') >= 0:
		// encoding/json would read a null id as 0.
		return shapeError(data, reflect.TypeFor[Prompt](), errNullID)
	case first[0] == '[':
		p.Form = PromptTokenLists
		if lists, ok := parseIDLists(data); ok {
			p.Tokens = lists
			return nil
		}
		return json.Unmarshal(data, &p.Tokens)
	case first[0] == '-' || (first[0] >= '0' && first[0] <= '9'):
		p.Form, p.Tokens = PromptTokens, make([][]int, 1)
		if ids, rest, ok := parseIDs(data); ok && len(bytes.TrimSpace(rest)) == 0 {
			p.Tokens[0] = ids
			return nil
		}
		return json.Unmarshal(data, &p.Tokens[0])
	}
	return shapeError(data, reflect.TypeFor[Prompt](), nil)
}

var errNullID = &json.UnmarshalTypeError{Value: "null"}

// nonNil keeps an empty list "[]" rather than null when encoded.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Stop is "stop": a string or a list of strings, kept as a list.
type Stop []string

func (Stop) jsonShape() string { return "a string or an array of strings" }

// UnmarshalJSON accepts a string, a list of strings, or null (no stop).
func (s *Stop) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case isNull(data):
		*s = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		var one string
		if err := unquote(data, &one); err != nil {
			return shapeError(data, reflect.TypeFor[Stop](), err)
		}
		*s = Stop{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return shapeError(data, reflect.TypeFor[Stop](), err)
	}
	*s = list
	return nil
}

// ContentPart is one element of a message's content array. Only "text"
// parts are served; Validate refuses the others by their type.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ChatContent is a message's content: a string (Text) or an array of
// parts (Parts, non-nil). A null content decodes as the empty string.
type ChatContent struct {
	Text  string
	Parts []ContentPart
}

// TextContent is content given as a string.
func TextContent(s string) ChatContent { return ChatContent{Text: s} }

// String is the text a chat template sees: the string, or the text parts
// joined by newlines, as vLLM joins them.
func (c ChatContent) String() string {
	if c.Parts == nil {
		return c.Text
	}
	texts := make([]string, len(c.Parts))
	for i, p := range c.Parts {
		texts[i] = p.Text
	}
	return strings.Join(texts, "\n")
}

func (ChatContent) jsonShape() string { return "a string or an array of content parts" }

// MarshalJSON writes the string, or the parts when content came as parts.
func (c ChatContent) MarshalJSON() ([]byte, error) {
	if c.Parts != nil {
		return marshalPlain(c.Parts)
	}
	return marshalPlain(c.Text)
}

// UnmarshalJSON accepts a string, an array of content parts, or null.
func (c *ChatContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	var v ChatContent
	var err error
	switch {
	case isNull(data):
	case len(data) > 0 && data[0] == '"':
		err = unquote(data, &v.Text)
	case len(data) > 0 && data[0] == '[':
		v.Parts = []ContentPart{}
		err = json.Unmarshal(data, &v.Parts)
	default:
		return shapeError(data, reflect.TypeFor[ChatContent](), nil)
	}
	if err != nil {
		return shapeError(data, reflect.TypeFor[ChatContent](), err)
	}
	*c = v
	return nil
}

// unquote decodes a JSON string literal. encoding/json hands UnmarshalJSON
// a literal it has already checked, so one without escapes is its own
// value; decoding it again would scan long prompts twice more.
func unquote(data []byte, s *string) error {
	if len(data) >= 2 && data[len(data)-1] == '"' && bytes.IndexByte(data, '\\') < 0 {
		*s = string(data[1 : len(data)-1])
		return nil
	}
	return json.Unmarshal(data, s)
}

// Token-id prompts run to thousands of ids; encoding/json decodes each by
// reflection after checking the whole array again. parseIDs reads an
// array of plain integers from the syntax encoding/json has already
// checked and returns what follows it; it gives up (ok false) on anything
// else (fractions, exponents, overflow, null), leaving the error message
// to encoding/json.
func parseIDs(data []byte) (ids []int, rest []byte, ok bool) {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 || data[0] != '[' {
		return nil, nil, false
	}
	ids = make([]int, 0, len(data)/6)
	i := skipSpace(data, 1)
	if i < len(data) && data[i] == ']' {
		return ids, data[i+1:], true
	}
	for i < len(data) {
		id, n, ok := parseID(data[i:])
		if !ok {
			return nil, nil, false
		}
		ids = append(ids, id)
		i = skipSpace(data, i+n)
		switch {
		case i < len(data) && data[i] == ',':
			i = skipSpace(data, i+1)
		case i < len(data) && data[i] == ']':
			return ids, data[i+1:], true
		default:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// parseIDLists reads [[ids], [ids], …] the same way.
func parseIDLists(data []byte) ([][]int, bool) {
	data = bytes.TrimSpace(data)
	lists := [][]int{}
	rest := bytes.TrimLeft(data[1:], " \t\r\n")
	if len(rest) > 0 && rest[0] == ']' {
		return lists, len(bytes.TrimSpace(rest[1:])) == 0
	}
	for {
		ids, after, ok := parseIDs(rest)
		if !ok {
			return nil, false
		}
		lists = append(lists, ids)
		after = bytes.TrimLeft(after, " \t\r\n")
		switch {
		case len(after) > 0 && after[0] == ',':
			rest = after[1:]
		case len(after) > 0 && after[0] == ']':
			return lists, len(bytes.TrimSpace(after[1:])) == 0
		default:
			return nil, false
		}
	}
}

// parseID reads a JSON integer that fits in an int and its length.
func parseID(b []byte) (int, int, bool) {
	i, neg := 0, false
	if i < len(b) && b[i] == '-' {
		neg, i = true, 1
	}
	start := i
	v := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v > (math.MaxInt-9)/10 {
			return 0, 0, false
		}
		v = v*10 + int(b[i]-'0')
	}
	if i == start || (i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E')) {
		return 0, 0, false
	}
	if neg {
		v = -v
	}
	return v, i, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
