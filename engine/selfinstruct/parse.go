package selfinstruct

import "unicode/utf8"

// ExtractQuestions returns the captures of Python's
//
//	re.findall(r"\d+\.\s+(.*?)(?=\n\d+\.\s+|$)", completion, re.DOTALL)
//
// each passed through str.strip(), in order. Go's regexp has no lookahead, so
// this is a hand-written scanner with the same semantics: \d and \s are
// Python's Unicode classes, and $ (no MULTILINE) holds at the end of the text
// or just before a final "\n". Empty captures are kept so that the caller can
// count them as rejected.
func ExtractQuestions(completion string) []string {
	var out []string
	s := completion
	for pos := 0; pos < len(s); {
		start, ok, skip := itemHead(s, pos)
		if !ok {
			pos = skip
			continue
		}
		// The lazy group stops at the first position where the lookahead
		// holds. \s+ is greedy and the lookahead always holds at the end, so
		// the regex never backtracks into \s+ and the capture starts after
		// the whole whitespace run.
		q := start
		for !lookahead(s, q) {
			_, w := utf8.DecodeRuneInString(s[q:])
			q += w
		}
		out = append(out, pyStrip(s[start:q]))
		// The lookahead consumes nothing, so the next search begins at q.
		pos = q
	}
	return out
}

// itemHead matches \d+\.\s+ at pos. On success it returns the offset just
// after the whitespace. On failure it returns where the search may resume:
// every start inside the same digit run fails the same way (the run has one
// end), so skipping the run keeps the scan linear without changing results.
func itemHead(s string, pos int) (start int, ok bool, resume int) {
	i := digitsEnd(s, pos)
	if i == pos {
		_, w := utf8.DecodeRuneInString(s[pos:])
		return 0, false, pos + w
	}
	if i >= len(s) || s[i] != '.' {
		return 0, false, i
	}
	j := spaceEnd(s, i+1)
	if j == i+1 {
		return 0, false, i
	}
	return j, true, 0
}

// lookahead is (?=\n\d+\.\s+|$) at q.
func lookahead(s string, q int) bool {
	if q == len(s) || q == len(s)-1 && s[q] == '\n' {
		return true
	}
	if s[q] != '\n' {
		return false
	}
	i := digitsEnd(s, q+1)
	if i == q+1 || i >= len(s) || s[i] != '.' {
		return false
	}
	return spaceEnd(s, i+1) > i+1
}

func digitsEnd(s string, i int) int {
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !isPyDigit(r) {
			break
		}
		i += w
	}
	return i
}

func spaceEnd(s string, i int) int {
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !isPySpace(r) {
			break
		}
		i += w
	}
	return i
}
