package selfinstruct

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Python's str methods and re classes differ from Go's unicode package in a
// few places. These helpers reproduce CPython 3 semantics; they were checked
// code point by code point against CPython 3.11 (Unicode 14). The only
// differences left are characters added in Unicode 15, which Go knows and
// CPython 3.11 does not.

// isPySpace is Python's str.isspace / re \s: Go's White_Space plus the
// information separators U+001C..U+001F, which Python counts as whitespace.
func isPySpace(r rune) bool {
	if r < utf8.RuneSelf {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0x1C, 0x1D, 0x1E, 0x1F:
			return true
		}
		return false
	}
	return unicode.IsSpace(r)
}

// isPyDigit is re \d for str patterns: Unicode decimal digits (Nd).
func isPyDigit(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsDigit(r)
}

// isPyWord is re \w for str patterns (str.isalnum or '_'). Combining marks
// are not word characters in Python's re, unlike in the regex module.
func isPyWord(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}

// pyTitleFull holds the SpecialCasing title mappings that expand to more than
// one character; every other code point maps through unicode.ToTitle exactly
// as CPython's _PyUnicode_ToTitleFull does.
var pyTitleFull = map[rune]string{
	0x00DF: "Ss",
	0x0149: "\u02BCN",
	0x01F0: "J\u030C",
	0x0390: "\u0399\u0308\u0301",
	0x03B0: "\u03A5\u0308\u0301",
	0x0587: "\u0535\u0582",
	0x1E96: "H\u0331",
	0x1E97: "T\u0308",
	0x1E98: "W\u030A",
	0x1E99: "Y\u030A",
	0x1E9A: "A\u02BE",
	0x1F50: "\u03A5\u0313",
	0x1F52: "\u03A5\u0313\u0300",
	0x1F54: "\u03A5\u0313\u0301",
	0x1F56: "\u03A5\u0313\u0342",
	0x1FB2: "\u1FBA\u0345",
	0x1FB4: "\u0386\u0345",
	0x1FB6: "\u0391\u0342",
	0x1FB7: "\u0391\u0342\u0345",
	0x1FC2: "\u1FCA\u0345",
	0x1FC4: "\u0389\u0345",
	0x1FC6: "\u0397\u0342",
	0x1FC7: "\u0397\u0342\u0345",
	0x1FD2: "\u0399\u0308\u0300",
	0x1FD3: "\u0399\u0308\u0301",
	0x1FD6: "\u0399\u0342",
	0x1FD7: "\u0399\u0308\u0342",
	0x1FE2: "\u03A5\u0308\u0300",
	0x1FE3: "\u03A5\u0308\u0301",
	0x1FE4: "\u03A1\u0313",
	0x1FE6: "\u03A5\u0342",
	0x1FE7: "\u03A5\u0308\u0342",
	0x1FF2: "\u1FFA\u0345",
	0x1FF4: "\u038F\u0345",
	0x1FF6: "\u03A9\u0342",
	0x1FF7: "\u03A9\u0342\u0345",
	0xFB00: "Ff",
	0xFB01: "Fi",
	0xFB02: "Fl",
	0xFB03: "Ffi",
	0xFB04: "Ffl",
	0xFB05: "St",
	0xFB06: "St",
	0xFB13: "\u0544\u0576",
	0xFB14: "\u0544\u0565",
	0xFB15: "\u0544\u056B",
	0xFB16: "\u054E\u0576",
	0xFB17: "\u0544\u056D",
}

// appendPyTitle appends Python's full title-case mapping of r, which is what
// str.capitalize applies to the first character (CPython >= 3.8).
func appendPyTitle(b []byte, r rune) []byte {
	if s, ok := pyTitleFull[r]; ok {
		return append(b, s...)
	}
	return utf8.AppendRune(b, unicode.ToTitle(r))
}

// isCased and isCaseIgnorable are the Unicode derived properties Python uses
// for the final-sigma rule of str.lower.
func isCased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

func isCaseIgnorable(r rune) bool {
	switch r {
	// Word_Break MidLetter, MidNumLet and Single_Quote.
	case '\'', '.', ':', 0x00B7, 0x0387, 0x055F, 0x05F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// finalSigma reports whether the capital sigma at rs[i] lower-cases to the
// final form: preceded by a cased letter and not followed by one, skipping
// case-ignorable characters on both sides (CPython handle_capital_sigma).
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && isCaseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !isCased(rs[j])
}

// appendPyLower appends Python's full lower-case mapping of rs[i]. Only
// U+0130 expands (to "i" + U+0307) and only capital sigma is contextual.
func appendPyLower(b []byte, rs []rune, i int) []byte {
	switch r := rs[i]; r {
	case 0x0130:
		return append(b, "i\u0307"...)
	case 0x03A3:
		if finalSigma(rs, i) {
			return utf8.AppendRune(b, 0x03C2)
		}
		return utf8.AppendRune(b, 0x03C3)
	default:
		return utf8.AppendRune(b, unicode.ToLower(r))
	}
}

// collapseSpace is re.sub(r"\s+", " ", s).strip(): every run of Python
// whitespace becomes one space and the ends are trimmed. Bytes that are not
// valid UTF-8 are copied through unchanged.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if isPySpace(r) {
			pending = b.Len() > 0
		} else {
			if pending {
				b.WriteByte(' ')
				pending = false
			}
			b.WriteString(s[i : i+w])
		}
		i += w
	}
	return b.String()
}

// pyStrip is str.strip() with no arguments.
func pyStrip(s string) string {
	return strings.TrimFunc(s, isPySpace)
}

// pyWordCount is len(s.split()).
func pyWordCount(s string) int {
	n := 0
	in := false
	for _, r := range s {
		if isPySpace(r) {
			in = false
		} else if !in {
			in = true
			n++
		}
	}
	return n
}
