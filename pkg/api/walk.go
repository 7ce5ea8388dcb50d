package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// encoding/json quietly turns invalid UTF-8 and lone surrogate escapes
// ("\ud800") into U+FFFD, reports type errors without array indices, and
// forgets which keys a body held. The walker reads the raw bytes of a body
// that json.Unmarshal has already accepted to recover all three. It never
// panics, whatever its input.

// member is one member of an object: its key (raw, escapes kept) and the
// bytes of its value.
type member struct {
	key []byte
	val []byte
}

// pathElem is one step of a path: an object key (raw) or an array index
// (key == nil).
type pathElem struct {
	key   []byte
	index int
}

type walker struct {
	data []byte
	pos  int
	path []pathElem

	checkStrings bool // stop at the first string that is not valid UTF-8
	collect      bool // record the members of the top-level object
	target       int  // stop at the value covering this offset; -1 for none

	members []member
	stopped bool // the walk stopped early; path locates the reason
	found   bool // it stopped at target
}

// inspect walks body, checking every string and collecting the top-level
// members. bad reports an invalid string, located by path.
func inspect(body []byte) (members []member, path string, bad bool) {
	w := walker{data: body, checkStrings: true, collect: true, target: -1}
	w.value()
	if w.stopped {
		return nil, formatPath(w.path), true
	}
	return w.members, "", false
}

// objectMembers returns the members of the object in data (nil for null).
func objectMembers(data []byte) []member {
	w := walker{data: data, collect: true, target: -1}
	w.value()
	return w.members
}

// pathAt returns the path of the innermost value whose first byte (an
// object or array) or any byte (a scalar) is at off. encoding/json's
// UnmarshalTypeError.Offset is just past a scalar and just past the opening
// bracket of a composite, so pathAt(body, Offset-1) names the culprit.
func pathAt(body []byte, off int) (string, bool) {
	w := walker{data: body, target: off}
	w.value()
	if !w.found {
		return "", false
	}
	return formatPath(w.path), true
}

func (w *walker) space() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

func (w *walker) peek() byte {
	if w.pos < len(w.data) {
		return w.data[w.pos]
	}
	return 0
}

func (w *walker) stop() bool {
	w.stopped = true
	return false
}

func (w *walker) hit() bool {
	w.found = true
	return w.stop()
}

// value walks one value and reports whether to go on.
func (w *walker) value() bool {
	w.space()
	start := w.pos
	switch w.peek() {
	case '{', '[':
		if start == w.target {
			return w.hit()
		}
		if w.peek() == '{' {
			return w.object()
		}
		return w.array()
	case '"':
		if !w.str() {
			return w.stop()
		}
	case 0:
		return false
	default:
		w.literal()
	}
	if w.target >= start && w.target < w.pos {
		return w.hit()
	}
	return true
}

func (w *walker) object() bool {
	w.pos++ // {
	w.space()
	if w.peek() == '}' {
		w.pos++
		return true
	}
	for {
		w.space()
		keyStart := w.pos
		if !w.str() {
			return w.stop() // the path names the object holding the key
		}
		key := w.data[keyStart+1 : w.pos-1]
		w.space()
		w.pos++ // :
		w.space()
		valStart := w.pos
		w.path = append(w.path, pathElem{key: key})
		if !w.value() {
			return false
		}
		if w.collect && len(w.path) == 1 {
			w.members = append(w.members, member{key: key, val: w.data[valStart:w.pos]})
		}
		w.path = w.path[:len(w.path)-1]
		if !w.next('}') {
			return true
		}
	}
}

func (w *walker) array() bool {
	w.pos++ // [
	w.space()
	if w.peek() == ']' {
		w.pos++
		return true
	}
	for i := 0; ; i++ {
		w.path = append(w.path, pathElem{index: i})
		if !w.value() {
			return false
		}
		w.path = w.path[:len(w.path)-1]
		if !w.next(']') {
			return true
		}
	}
}

// next consumes a comma (true: another element follows) or the closing
// bracket (false).
func (w *walker) next(closing byte) bool {
	w.space()
	if w.peek() == ',' {
		w.pos++
		return true
	}
	if w.peek() == closing {
		w.pos++
	}
	return false
}

func (w *walker) literal() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ',', ']', '}', ':', ' ', '\t', '\n', '\r':
			return
		}
		w.pos++
	}
}

// str consumes a string literal; it reports false at an invalid one when
// checkStrings is set, and at a string that does not end.
func (w *walker) str() bool {
	if w.peek() != '"' {
		return false
	}
	w.pos++
	for w.pos < len(w.data) {
		c := w.data[w.pos]
		switch {
		case c == '"':
			w.pos++
			return true
		case c == '\\':
			if !w.escape() && w.checkStrings {
				return false
			}
		case c < utf8.RuneSelf:
			w.pos++
		default:
			r, size := utf8.DecodeRune(w.data[w.pos:])
			if r == utf8.RuneError && size == 1 && w.checkStrings {
				return false
			}
			w.pos += size
		}
	}
	return false
}

// escape consumes one escape sequence; false for a lone surrogate.
func (w *walker) escape() bool {
	if w.pos+1 >= len(w.data) || w.data[w.pos+1] != 'u' {
		w.pos += 2
		return true
	}
	hi, ok := w.hex4(w.pos + 2)
	w.pos += 6
	switch {
	case !ok:
		return false
	case hi >= 0xDC00 && hi < 0xE000:
		return false
	case hi < 0xD800 || hi >= 0xE000:
		return true
	}
	if w.pos+1 >= len(w.data) || w.data[w.pos] != '\\' || w.data[w.pos+1] != 'u' {
		return false
	}
	lo, ok := w.hex4(w.pos + 2)
	if !ok || lo < 0xDC00 || lo >= 0xE000 {
		return false
	}
	w.pos += 6
	return true
}

func (w *walker) hex4(at int) (rune, bool) {
	if at+4 > len(w.data) {
		return 0, false
	}
	var v rune
	for _, c := range w.data[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func formatPath(p []pathElem) string {
	var b []byte
	for i, e := range p {
		if e.key == nil {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(e.index), 10)
			b = append(b, ']')
			continue
		}
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, keyString(e.key)...)
	}
	return string(b)
}

// keyString decodes a raw key; escapes are rare in keys, so the common
// case is a plain conversion.
func keyString(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var s string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
		return string(raw)
	}
	return s
}
