package tokenizer

import "unicode/utf8"

// Decode returns the text of ids. Out-of-range ids are skipped, and so are
// special tokens when skipSpecial is set. Bytes that are not valid UTF-8
// become U+FFFD, one per maximal invalid subpart, like Hugging Face's
// decode (Rust's from_utf8_lossy, Python's errors="replace").
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	var buf []byte
	for _, id := range ids {
		buf = t.appendBytes(buf, id, skipSpecial)
	}
	text, _ := decodeLossy(buf, true)
	return text
}

func (t *Tokenizer) appendBytes(buf []byte, id int, skipSpecial bool) []byte {
	if id < 0 || id >= len(t.idBytes) || (skipSpecial && t.special[id]) {
		return buf
	}
	return append(buf, t.idBytes[id]...)
}

// StreamDecoder decodes ids one at a time, as they are generated. Its
// output, concatenated, equals Decode of all the ids, and no chunk ever
// ends inside a UTF-8 character. Not safe for concurrent use.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	pending     []byte // bytes of a character that may still complete
}

// NewStreamDecoder starts an incremental decode.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Add decodes one more id and returns the text it completes, possibly "".
func (d *StreamDecoder) Add(id int) string {
	d.pending = d.t.appendBytes(d.pending, id, d.skipSpecial)
	text, n := decodeLossy(d.pending, false)
	d.pending = d.pending[:copy(d.pending, d.pending[n:])]
	return text
}

// Flush returns what is left: a character cut short becomes U+FFFD.
func (d *StreamDecoder) Flush() string {
	text, _ := decodeLossy(d.pending, true)
	d.pending = d.pending[:0]
	return text
}

// decodeLossy converts b to valid UTF-8. Unless final, it stops before a
// trailing character that later bytes could still complete, and reports how
// many bytes it consumed.
func decodeLossy(b []byte, final bool) (string, int) {
	if utf8.Valid(b) {
		return string(b), len(b)
	}
	out := make([]byte, 0, len(b)+8)
	i := 0
	for i < len(b) {
		n, st := scanChar(b[i:])
		switch {
		case st == charOK:
			out = append(out, b[i:i+n]...)
		case st == charTruncated && !final:
			return string(out), i
		default:
			out = utf8.AppendRune(out, utf8.RuneError)
		}
		i += n
	}
	return string(out), i
}

type charStatus int

const (
	charOK        charStatus = iota
	charInvalid              // b[:n] is a maximal invalid subpart
	charTruncated            // b is a valid start of a character but ends early
)

// scanChar classifies the character at the start of b (len(b) > 0) following
// the Unicode "maximal subpart" rule, so that replacement matches Rust and
// Python exactly.
func scanChar(b []byte) (int, charStatus) {
	c := b[0]
	if c < utf8.RuneSelf {
		return 1, charOK
	}
	size, lo, hi := leadInfo(c)
	if size == 0 {
		return 1, charInvalid
	}
	for i := 1; i < size; i++ {
		if i == len(b) {
			return i, charTruncated
		}
		if b[i] < lo || b[i] > hi {
			return i, charInvalid
		}
		lo, hi = 0x80, 0xBF
	}
	return size, charOK
}

// leadInfo gives the length of the character a lead byte starts and the
// range allowed for its second byte (which excludes overlongs and
// surrogates); size 0 means c cannot start a character.
func leadInfo(c byte) (size int, lo, hi byte) {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 2, 0x80, 0xBF
	case c == 0xE0:
		return 3, 0xA0, 0xBF
	case c == 0xED:
		return 3, 0x80, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		return 3, 0x80, 0xBF
	case c == 0xF0:
		return 4, 0x90, 0xBF
	case c >= 0xF1 && c <= 0xF3:
		return 4, 0x80, 0xBF
	case c == 0xF4:
		return 4, 0x80, 0x8F
	}
	return 0, 0, 0
}
