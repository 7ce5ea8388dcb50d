package tokenizer

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The vocabulary and merges are most of a tokenizer.json (hundreds of
// thousands of entries); decoding them with encoding/json's reflection
// takes most of a second, so they are read by this small scanner. Its input
// has already been validated by encoding/json (it comes from a
// json.RawMessage), so only type mismatches remain to be reported.

var errJSONShape = errors.New("tokenizer: unexpected JSON value")

type jsonScanner struct {
	data []byte
	pos  int
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.pos == len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *jsonScanner) consume(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.pos++
	return true
}

// list calls item for each element of an array or each member of an
// object (after which the scanner sits at the member's key).
func (s *jsonScanner) list(open, close byte, item func() error) error {
	if !s.consume(open) {
		return errJSONShape
	}
	if s.consume(close) {
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if s.consume(close) {
			return nil
		}
		if !s.consume(',') {
			return errJSONShape
		}
	}
}

// str reads a string.
func (s *jsonScanner) str() (string, error) {
	if !s.consume('"') {
		return "", errJSONShape
	}
	start := s.pos
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '"':
			v := string(s.data[start:s.pos])
			s.pos++
			return v, nil
		case '\\':
			return s.escapedStr(start)
		}
		s.pos++
	}
	return "", errJSONShape
}

// escapedStr finishes a string holding escapes; lone surrogates become
// U+FFFD as in encoding/json.
func (s *jsonScanner) escapedStr(start int) (string, error) {
	out := append([]byte(nil), s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return string(out), nil
		case c != '\\':
			out = append(out, c)
			s.pos++
		default:
			r, err := s.escape()
			if err != nil {
				return "", err
			}
			out = utf8.AppendRune(out, r)
		}
	}
	return "", errJSONShape
}

// escape reads one escape sequence at s.pos (the backslash).
func (s *jsonScanner) escape() (rune, error) {
	if s.pos+1 >= len(s.data) {
		return 0, errJSONShape
	}
	c := s.data[s.pos+1]
	s.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		return 0, errJSONShape
	}
	r, ok := s.hex4()
	if !ok {
		return 0, errJSONShape
	}
	if utf16.IsSurrogate(r) {
		save := s.pos
		if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
			s.pos += 2
			if r2, ok := s.hex4(); ok {
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					return dec, nil
				}
			}
		}
		s.pos = save
		return utf8.RuneError, nil
	}
	return r, nil
}

func (s *jsonScanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}

// integer reads a number that must be an integer.
func (s *jsonScanner) integer() (int, error) {
	s.skipSpace()
	start := s.pos
	for s.pos < len(s.data) && (s.data[s.pos] == '-' || (s.data[s.pos] >= '0' && s.data[s.pos] <= '9')) {
		s.pos++
	}
	n, err := strconv.Atoi(string(s.data[start:s.pos]))
	if err != nil {
		return 0, errJSONShape
	}
	return n, nil
}

// scanVocab calls fn for each entry of {"token": id, ...}.
func scanVocab(data []byte, fn func(tok string, id int)) error {
	s := &jsonScanner{data: data}
	return s.list('{', '}', func() error {
		tok, err := s.str()
		if err != nil || !s.consume(':') {
			return errJSONShape
		}
		id, err := s.integer()
		if err != nil {
			return err
		}
		fn(tok, id)
		return nil
	})
}

// scanMerges calls fn for each merge, accepting both serialisations:
// "a b" strings and ["a", "b"] pairs.
func scanMerges(data []byte, fn func(rank int, a, b string) error) error {
	s := &jsonScanner{data: data}
	if s.peek() == 'n' { // null
		return nil
	}
	rank := 0
	return s.list('[', ']', func() error {
		a, b, err := s.merge()
		if err != nil {
			return err
		}
		rank++
		return fn(rank-1, a, b)
	})
}

func (s *jsonScanner) merge() (a, b string, err error) {
	if s.peek() == '"' {
		line, err := s.str()
		if err != nil {
			return "", "", err
		}
		return splitMerge(line)
	}
	var parts [2]string
	n := 0
	err = s.list('[', ']', func() error {
		p, err := s.str()
		if n < len(parts) {
			parts[n] = p
		}
		n++
		return err
	})
	if err != nil || n != 2 {
		return "", "", errJSONShape
	}
	return parts[0], parts[1], nil
}
