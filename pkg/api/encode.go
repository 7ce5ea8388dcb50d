package api

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"unicode/utf8"
)

// SSEDone ends every OpenAI-compatible event stream.
const SSEDone = "data: [DONE]\n\n"

// AppendJSON appends v as JSON without HTML escaping (like Python's
// json.dumps, which vLLM uses: "<" stays "<"). On error dst is returned
// unchanged; encoding/json refuses NaN and ±Inf, see ClampLogprob.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	w := appendWriter{b: dst}
	enc := json.NewEncoder(&w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	return w.b[:len(w.b)-1], nil // Encode ends with a newline
}

// AppendSSE appends one server-sent event "data: <json>\n\n". On error
// dst is returned unchanged.
func AppendSSE(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	out, err := AppendJSON(append(dst, "data: "...), v)
	if err != nil {
		return dst[:n], err
	}
	return append(out, "\n\n"...), nil
}

// AppendSSEError appends an error event in the middle of an OpenAI stream,
// data: {"error":{…}}, as vLLM sends it (the stream still ends with SSEDone).
func AppendSSEError(dst []byte, e *Error) []byte {
	dst = e.AppendJSON(append(dst, "data: "...))
	return append(dst, "\n\n"...)
}

// AppendTGISSEError appends an error event of a LoRAX /generate_stream:
// data: {"error":"…","error_type":"…"}.
func AppendTGISSEError(dst []byte, e *Error) []byte {
	dst = e.AppendTGIJSON(append(dst, "data: "...))
	return append(dst, "\n\n"...)
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// MinLogprob is the floor vLLM puts under logprobs (-9999.0), which keeps
// -Inf out of JSON.
const MinLogprob = -9999.0

// ClampLogprob returns x, or MinLogprob for -Inf, NaN and anything lower.
func ClampLogprob(x float64) float64 {
	if math.IsNaN(x) || x < MinLogprob {
		return MinLogprob
	}
	return x
}

// ID prefixes as OpenAI and vLLM use them.
const (
	CompletionIDPrefix = "cmpl-"
	ChatIDPrefix       = "chatcmpl-"
)

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns prefix followed by 24 random base62 characters (~143 bits).
// math/rand/v2's global source is ChaCha8 seeded by the runtime: unguessable
// enough for response ids, and free of locks and system calls.
func NewID(prefix string) string {
	b := make([]byte, len(prefix)+24)
	copy(b, prefix)
	for i := len(prefix); i < len(b); i++ {
		b[i] = idAlphabet[rand.IntN(len(idAlphabet))]
	}
	return string(b)
}

// Ptr returns a pointer to v, for optional fields such as FinishReason.
func Ptr[T any](v T) *T { return &v }

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 bytes
// become U+FFFD, as encoding/json does, so the output is always valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// marshalPlain encodes the alias type of a MarshalJSON method without HTML
// escaping, so that AppendJSON's output has none either.
func marshalPlain(v any) ([]byte, error) { return AppendJSON(nil, v) }
