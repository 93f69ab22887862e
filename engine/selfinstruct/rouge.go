package selfinstruct

import "unicode/utf8"

// Tokenize is rouge_score's default tokenizer without stemming: Python
// str.lower(), every run of characters outside [a-z0-9] becomes a space,
// split, keep the non-empty tokens. Non-ASCII letters are separators; the
// only non-ASCII characters whose lower case is ASCII are U+212A (Kelvin sign
// → "k") and U+0130 (→ "i" + U+0307, so the token ends after the "i").
func Tokenize(s string) []string {
	var out []string
	forEachToken(s, make([]byte, 0, 32), func(tok []byte) { out = append(out, string(tok)) })
	return out
}

// forEachToken calls emit with each token in a reused buffer, so callers can
// intern tokens without allocating a string per token.
func forEachToken(s string, buf []byte, emit func([]byte)) {
	buf = buf[:0]
	flush := func() {
		if len(buf) > 0 {
			emit(buf)
			buf = buf[:0]
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
				buf = append(buf, c)
			case 'A' <= c && c <= 'Z':
				buf = append(buf, c+('a'-'A'))
			default:
				flush()
			}
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		switch r {
		case 0x212A:
			buf = append(buf, 'k')
		case 0x0130:
			buf = append(buf, 'i')
			flush()
		default:
			flush()
		}
	}
	flush()
}

// RougeL is the rougeL F-measure of rouge_score between two strings. The
// score is symmetric, so argument order does not matter.
func RougeL(a, b string) float64 {
	ta, tb := Tokenize(a), Tokenize(b)
	ia, ib := make([]uint32, len(ta)), make([]uint32, len(tb))
	ids := map[string]uint32{}
	for k, t := range ta {
		ia[k] = intern(ids, t)
	}
	for k, t := range tb {
		ib[k] = intern(ids, t)
	}
	return f1(lcs(ia, ib, make([]int32, len(ia))), len(ia), len(ib))
}

func intern(ids map[string]uint32, t string) uint32 {
	id, ok := ids[t]
	if !ok {
		id = uint32(len(ids))
		ids[t] = id
	}
	return id
}

// f1 computes the F-measure with rouge_score's exact floating-point steps,
// so that comparisons against the 0.7 threshold agree to the last bit:
// P = lcs/len(prediction), R = lcs/len(target), F = 2*P*R/(P+R).
func f1(l int32, na, nb int) float64 {
	if na == 0 || nb == 0 {
		return 0
	}
	p := float64(l) / float64(na)
	r := float64(l) / float64(nb)
	if p+r <= 0 {
		return 0
	}
	return float64(2*p*r) / (p + r)
}

// lcs is the length of the longest common subsequence of a and b, by the
// standard dynamic programme kept in one row over a (len(row) >= len(a)).
// Rows for tokens of b that do not occur in a are identities and are cheap.
func lcs(a, b []uint32, row []int32) int32 {
	row = row[:len(a)]
	clear(row)
	for _, tb := range b {
		var diag, left int32 // row[j-1] of the previous and of the current row
		for j, ta := range a {
			up := row[j]
			v := left
			if ta == tb {
				v = diag + 1
			} else if up > v {
				v = up
			}
			diag = up
			row[j] = v
			left = v
		}
	}
	if len(a) == 0 {
		return 0
	}
	return row[len(a)-1]
}
