package tokenizer

// GPT-2's byte-level alphabet: every byte maps to a printable rune so that
// vocabularies can be stored as text. Printable Latin-1 bytes map to
// themselves; the rest are shifted to U+0100 upwards in byte order.
var runeToByte [324]int16 // -1 for runes outside the alphabet

func init() {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = next
			next++
		}
		runeToByte[r] = int16(b)
	}
}

// appendByteLevelDecode appends the raw bytes of a token written in the
// byte-level alphabet. ok is false when a rune lies outside the alphabet;
// Hugging Face then keeps the token's own UTF-8 bytes, and so do callers.
func appendByteLevelDecode(dst []byte, token string) (raw []byte, ok bool) {
	for _, r := range token {
		if r < 0 || int(r) >= len(runeToByte) || runeToByte[r] < 0 {
			return dst, false
		}
		dst = append(dst, byte(runeToByte[r]))
	}
	return dst, true
}
