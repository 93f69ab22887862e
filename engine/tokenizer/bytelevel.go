package tokenizer

import "unicode/utf8"

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so every byte becomes a visible character in the vocabulary.
var (
	byteRune [256]rune
	runeByte [324]int16 // -1 where the rune is not a byte-level symbol
)

func init() {
	for i := range runeByte {
		runeByte[i] = -1
	}
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = rune(256 + n)
			n++
		}
		runeByte[byteRune[b]] = int16(b)
	}
}

// byteLevelString maps raw bytes to their byte-level symbols (the form tokens take in vocab).
func byteLevelString(raw string) string {
	buf := make([]byte, 0, 2*len(raw))
	for i := 0; i < len(raw); i++ {
		buf = utf8.AppendRune(buf, byteRune[raw[i]])
	}
	return string(buf)
}

// byteLevelDecode maps a vocabulary token back to raw bytes; ok is false when some rune is not a
// byte-level symbol (HF's ByteLevel decoder then emits the token's UTF-8 unchanged).
func byteLevelDecode(tok string) (raw []byte, ok bool) {
	raw = make([]byte, 0, len(tok))
	for _, r := range tok {
		if r < 0 || int(r) >= len(runeByte) || runeByte[r] < 0 {
			return nil, false
		}
		raw = append(raw, byte(runeByte[r]))
	}
	return raw, true
}

// appendLossy appends b to dst as UTF-8, replacing each maximal invalid subpart with U+FFFD, as
// Rust's String::from_utf8_lossy (and so HF's decode) does; Go's own conversions differ on
// truncated sequences (one U+FFFD per byte).
func appendLossy(dst []byte, b []byte) []byte {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			dst = append(dst, b[i])
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			dst = append(dst, b[i:i+n]...)
			i += n
			continue
		}
		dst = append(dst, "\uFFFD"...)
		i += invalidPrefixLen(b[i:])
	}
	return dst
}

// invalidPrefixLen is the length of the maximal subpart at the start of b (which does not start a
// valid sequence): the lead byte plus the continuation bytes that were still possible (Unicode
// 3.9, "substitution of maximal subparts").
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}

// incompleteTail reports how many bytes at the end of b form a valid but unfinished UTF-8 prefix,
// which a streaming decoder must hold back.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		start := len(b) - k
		c := b[start]
		if c < 0x80 {
			return 0
		}
		if c < 0xC0 {
			continue // continuation byte: look further back
		}
		// A lead byte: is b[start:] a proper prefix of a valid sequence?
		if invalidPrefixLen(b[start:]) == k && k < seqLen(c) {
			return k
		}
		return 0
	}
	return 0
}

func seqLen(c byte) int {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 2
	case c >= 0xE0 && c <= 0xEF:
		return 3
	case c >= 0xF0 && c <= 0xF4:
		return 4
	}
	return 1
}
