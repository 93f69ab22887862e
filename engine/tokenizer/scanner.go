package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The split patterns serl recognises, exactly as the tokenizer.json files spell them. Go's regexp
// cannot express (?!\S), and an RE2-style \s misses U+0085, U+00A0 and U+3000, so each pattern is a
// hand-written scanner with the semantics of the Oniguruma engine HF uses: at each position the
// first alternative that matches wins, quantifiers are greedy and back off where the pattern needs.
const (
	patternQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

type splitter struct {
	pattern   string
	maxDigits int // 1 for Qwen2, 3 for Llama-3
}

func splitterFor(pattern string) (splitter, bool) {
	switch pattern {
	case patternQwen2:
		return splitter{pattern, 1}, true
	case patternLlama3:
		return splitter{pattern, 3}, true
	}
	return splitter{}, false
}

// isSpace is Unicode White_Space, which is \s in Oniguruma (and Rust's char::is_whitespace).
func isSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r == 0x20, r == 0x85, r == 0xA0, r == 0x1680,
		r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return (r|0x20) >= 'a' && (r|0x20) <= 'z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '0' && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// foldIs reports whether r matches the ASCII letter c case-insensitively under Unicode simple case
// folding (for the contraction letters only 's' has a non-ASCII partner: U+017F LONG S).
func foldIs(r rune, c rune) bool {
	return r == c || r == c-'a'+'A' || (c == 's' && r == 0x17F)
}

func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// split calls emit for each match of the pattern in s, in order; the matches tile s (every
// character belongs to one of the alternatives), as HF's Split(Isolated) produces.
func (sp splitter) split(s string, emit func(piece string)) {
	for i := 0; i < len(s); {
		n := sp.match(s, i)
		emit(s[i : i+n])
		i += n
	}
}

// match returns the byte length of the match starting at i (> 0 while i < len(s)).
func (sp splitter) match(s string, i int) int {
	r, n := runeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		r2, n2 := runeAt(s, i+n)
		switch {
		case foldIs(r2, 's'), foldIs(r2, 't'), foldIs(r2, 'm'), foldIs(r2, 'd'):
			return n + n2
		case foldIs(r2, 'r'), foldIs(r2, 'v'), foldIs(r2, 'l'):
			want := 'e'
			if foldIs(r2, 'l') {
				want = 'l'
			}
			if r3, n3 := runeAt(s, i+n+n2); foldIs(r3, want) {
				return n + n2 + n3
			}
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return n + sp.letters(s, i+n)
	}
	if r != '\r' && r != '\n' && !isNumber(r) {
		if r2, n2 := runeAt(s, i+n); n2 > 0 && isLetter(r2) {
			return n + n2 + sp.letters(s, i+n+n2)
		}
	}
	// \p{N} or \p{N}{1,3}
	if isNumber(r) {
		j := i + n
		for k := 1; k < sp.maxDigits; k++ {
			r2, n2 := runeAt(s, j)
			if n2 == 0 || !isNumber(r2) {
				break
			}
			j += n2
		}
		return j - i
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := i
	if r == ' ' {
		if r2, n2 := runeAt(s, i+n); n2 > 0 && isOther(r2) {
			start = i + n
		}
	}
	if r0, _ := runeAt(s, start); isOther(r0) {
		j := start
		for {
			r2, n2 := runeAt(s, j)
			if n2 == 0 || !isOther(r2) {
				break
			}
			j += n2
		}
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j - i
	}
	// r is White_Space here: every other character was taken above. W = the whitespace run.
	end, lastNL, count, lastStart := i, -1, 0, i
	for {
		r2, n2 := runeAt(s, end)
		if n2 == 0 || !isSpace(r2) {
			break
		}
		if r2 == '\r' || r2 == '\n' {
			lastNL = end
		}
		lastStart = end
		end += n2
		count++
	}
	// \s*[\r\n]+ : \s* backs off to the last \r or \n of the run, which [\r\n]+ then takes.
	if lastNL >= 0 {
		return lastNL + 1 - i
	}
	// \s+(?!\S): the whole run at the end of the text, else one character less (if any remain).
	if end == len(s) || count == 1 {
		return end - i // count == 1 before a non-space: \s+(?!\S) fails, \s+ takes it
	}
	return lastStart - i
}

func (sp splitter) letters(s string, j int) int {
	k := j
	for {
		r, n := runeAt(s, k)
		if n == 0 || !isLetter(r) {
			return k - j
		}
		k += n
	}
}
