package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// jsonReader walks JSON tokens so that duplicate keys can be refused:
// decoding into a map or struct would silently keep the last duplicate.
type jsonReader struct {
	dec *json.Decoder
	bad error // sentinel for syntax and type errors
}

func newJSONReader(r io.Reader, bad error) *jsonReader {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return &jsonReader{dec: dec, bad: bad}
}

func (j *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", j.bad, fmt.Sprintf(format, args...))
}

func (j *jsonReader) token() (json.Token, error) {
	tok, err := j.dec.Token()
	if err != nil {
		return nil, j.errorf("%v", err)
	}
	return tok, nil
}

func (j *jsonReader) delim(want json.Delim) error {
	tok, err := j.token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return j.errorf("expected %q, got %v", want, tok)
	}
	return nil
}

// object reads one object, calling field with the decoder positioned at
// each value; field must consume exactly that value.
func (j *jsonReader) object(field func(key string) error) error {
	if err := j.delim('{'); err != nil {
		return err
	}
	return j.objectBody(field)
}

// objectBody is object after its opening brace has been consumed.
func (j *jsonReader) objectBody(field func(key string) error) error {
	seen := make(map[string]bool)
	for j.dec.More() {
		tok, err := j.token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // object keys are always strings
		if seen[key] {
			return fmt.Errorf("%w %q", ErrDuplicateKey, key)
		}
		seen[key] = true
		if err := field(key); err != nil {
			return err
		}
	}
	return j.delim('}')
}

// str reads a string value; ok is false (and the value consumed only if it
// was a scalar) when the value is not a string.
func (j *jsonReader) str() (s string, ok bool, err error) {
	tok, err := j.token()
	if err != nil {
		return "", false, err
	}
	s, ok = tok.(string)
	return s, ok, nil
}

// ints reads an array of integers; values beyond int64 report ErrOverflow.
func (j *jsonReader) ints() ([]int64, error) {
	if err := j.delim('['); err != nil {
		return nil, err
	}
	var out []int64
	for j.dec.More() {
		tok, err := j.token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, j.errorf("expected an integer, got %v", tok)
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("%w: %s", ErrOverflow, num)
		}
		if err != nil {
			return nil, j.errorf("expected an integer, got %s", num)
		}
		out = append(out, v)
	}
	return out, j.delim(']')
}

// skip consumes one value of any type.
func (j *jsonReader) skip() error {
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); err != nil {
		return j.errorf("%v", err)
	}
	return nil
}

// end checks that only whitespace (the padding writers add) follows.
func (j *jsonReader) end() error {
	if _, err := j.dec.Token(); err != io.EOF {
		return j.errorf("unexpected data after the object")
	}
	return nil
}
