package selfinstruct

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// extractRef is a literal backtracking interpretation of
// \d+\.\s+(.*?)(?=\n\d+\.\s+|$) over code points, as Python's re runs it:
// greedy \d+ and \s+ give back one character at a time, the lazy group grows
// one character at a time. It shares only the character classes with the
// scanner under test.
func extractRef(s string) []string {
	rs := []rune(s)
	n := len(rs)
	look := func(q int) bool {
		if q == n || q == n-1 && rs[q] == '\n' {
			return true
		}
		if rs[q] != '\n' {
			return false
		}
		i := q + 1
		for i < n && isPyDigit(rs[i]) {
			i++
		}
		return i > q+1 && i < n && rs[i] == '.' && i+1 < n && isPySpace(rs[i+1])
	}
	match := func(pos int) (int, int, bool) {
		dmax := 0
		for pos+dmax < n && isPyDigit(rs[pos+dmax]) {
			dmax++
		}
		for d := dmax; d >= 1; d-- {
			dot := pos + d
			if dot >= n || rs[dot] != '.' {
				continue
			}
			wmax := 0
			for dot+1+wmax < n && isPySpace(rs[dot+1+wmax]) {
				wmax++
			}
			for w := wmax; w >= 1; w-- {
				start := dot + 1 + w
				for q := start; q <= n; q++ {
					if look(q) {
						return start, q, true
					}
				}
			}
		}
		return 0, 0, false
	}
	var out []string
	for pos := 0; pos <= n; {
		start, end, ok := match(pos)
		if !ok {
			pos++
			continue
		}
		out = append(out, strings.TrimFunc(string(rs[start:end]), isPySpace))
		pos = end // a match consumes at least "d. ", so the scan advances
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		workedCompletion, "", "1. a\n2. b", "1. \n2. x y", "1.\u3000a\n\u0662. b\n", "3. apples\n1. Q",
		"1. a\n2.b", "1. a \n 2. b", "1. a\r\n2. b\r\n", "12.\x1cfoo\n", "Write a program\n1. Write a program to draw maps now",
		"1. \u0130mage of a map\u0301 here\n2. \u00df is a letter here", "9.\n\n\n", "\n1. x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := ExtractQuestions(s)
		if utf8.ValidString(s) {
			want := extractRef(s)
			if len(want) == 0 {
				want = nil
			}
			if !equalStrings(got, want) {
				t.Fatalf("ExtractQuestions(%q) = %q, reference %q", s, got, want)
			}
		}
		for _, q := range got {
			if !strings.Contains(s, q) {
				t.Fatalf("capture %q is not a substring of %q", q, s)
			}
			if pyStrip(q) != q {
				t.Fatalf("capture %q not stripped", q)
			}
		}
		for _, mode := range []Capitalization{CapitalizeFirst, CapitalizePython} {
			for _, c := range ParseCompletion(s, mode) {
				if c.Reason == Accepted {
					if c.Text == "" || c.Text[0] >= utf8.RuneSelf || strings.ContainsAny(c.Text[:1], pyPunctuation) {
						t.Fatalf("accepted %q", c.Text)
					}
					if n := len(strings.Split(c.Text, " ")); n < MinWords || n > MaxWords {
						t.Fatalf("accepted %q with %d words", c.Text, n)
					}
				}
				if collapseSpace(c.Text) != c.Text && utf8.ValidString(c.Text) {
					t.Fatalf("cleaned text %q still has loose whitespace", c.Text)
				}
			}
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var tokenRE = regexp.MustCompile(`[a-z0-9]+`)

// tokenizeRef follows rouge_score literally: Python lower() of the whole
// string, then the runs of [a-z0-9].
func tokenizeRef(s string) []string {
	rs := []rune(s)
	var b []byte
	for i := range rs {
		b = appendPyLower(b, rs, i)
	}
	return tokenRE.FindAllString(string(b), -1)
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"What is the value of $\\frac{14!}{5!9!}$?", "", "\u212Aelvin \u0130stanbul", "caf\u00e9 \u03a3\u03a3", "x_1=3.5", "\xff\xfeAB",
	} {
		f.Add(s, "find the sum of the roots")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ta := Tokenize(a)
		if utf8.ValidString(a) {
			if want := tokenizeRef(a); !equalStrings(ta, want) {
				t.Fatalf("Tokenize(%q) = %q, reference %q", a, ta, want)
			}
		}
		fab, fba := RougeL(a, b), RougeL(b, a)
		if fab != fba || fab < 0 || fab > 1 {
			t.Fatalf("RougeL(%q, %q) = %v, reversed %v", a, b, fab, fba)
		}
		if self := RougeL(a, a); (len(ta) > 0) != (self == 1) {
			t.Fatalf("RougeL(a, a) = %v with %d tokens", self, len(ta))
		}
		p := NewPool()
		p.Add(b)
		if got, _ := p.MaxF1(a); got != fab {
			t.Fatalf("Pool.MaxF1 = %v, RougeL = %v for %q, %q", got, fab, a, b)
		}
	})
}
