package selfinstruct

import (
	"strings"
	"unicode/utf8"
)

// Reason says whether a candidate problem was accepted and, if not, which
// filter rejected it. The rule filters are tried in the official order, so a
// candidate reports the first one it fails.
type Reason uint8

const (
	Accepted    Reason = iota
	Empty              // nothing left after whitespace clean-up
	TooShort           // 3 words or fewer
	TooLong            // more than 150 words
	Keyword            // contains a blacklisted word (image, graph, draw, ...)
	Program            // starts with "Write a program"
	Punctuation        // first character is ASCII punctuation
	NonASCII           // first character is not ASCII
	Similar            // ROUGE-L F1 against the pool above the threshold
	NumReasons
)

var reasonNames = [NumReasons]string{"Accepted", "Empty", "TooShort", "TooLong", "Keyword", "Program", "Punctuation", "NonASCII", "Similar"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "Reason(" + itoa(int(r)) + ")"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// Capitalization selects how the first character of a parsed question is
// cased (docs/SERL.md D2).
type Capitalization uint8

const (
	// CapitalizeFirst (the default) title-cases the first character only
	// and leaves the rest untouched, so variable names and LaTeX survive.
	CapitalizeFirst Capitalization = iota
	// CapitalizePython is the official str.capitalize(): it also lower-cases
	// everything after the first character.
	CapitalizePython
)

// Word-count bounds of the length filter: keep iff MinWords <= n <= MaxWords.
const (
	MinWords = 4
	MaxWords = 150
)

// Blacklist is the official keyword list, matched as whole words ignoring case.
var Blacklist = []string{"image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw", "plot", "go to"}

// pyPunctuation is Python's string.punctuation.
const pyPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// Clean turns one captured question into the text that is filtered and
// trained on: re.sub(r"\s+", " ", q).strip() followed by the capitalisation.
func Clean(question string, mode Capitalization) string {
	s := collapseSpace(question)
	if s == "" {
		return s
	}
	r, w := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && w == 1 {
		// A byte that is not UTF-8 has no case; keep the text as it is.
		if mode == CapitalizeFirst {
			return s
		}
		return s[:1] + pyLowerRest(s, 1)
	}
	b := make([]byte, 0, len(s)+8)
	b = appendPyTitle(b, r)
	if mode == CapitalizeFirst {
		return string(append(b, s[w:]...))
	}
	return string(b) + pyLowerRest(s, w)
}

// pyLowerRest lower-cases s[from:] as Python's capitalize does: full
// mappings, with the final-sigma context taken from the whole string.
func pyLowerRest(s string, from int) string {
	rs := make([]rune, 0, len(s))
	raw := make([]int, 0, len(s)) // byte offset of each rune, to copy invalid bytes through
	first := -1
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if i == from {
			first = len(rs)
		}
		rs = append(rs, r)
		raw = append(raw, i)
		i += w
	}
	if first < 0 {
		return ""
	}
	b := make([]byte, 0, len(s)-from+8)
	for k := first; k < len(rs); k++ {
		if rs[k] == utf8.RuneError {
			end := len(s)
			if k+1 < len(raw) {
				end = raw[k+1]
			}
			if end-raw[k] == 1 {
				b = append(b, s[raw[k]])
				continue
			}
		}
		b = appendPyLower(b, rs, k)
	}
	return string(b)
}

// CheckRules applies the rule filters of docs/SERL.md §2.4 to a cleaned
// question, in the official order.
func CheckRules(text string) Reason {
	if text == "" {
		return Empty
	}
	switch n := pyWordCount(text); {
	case n < MinWords:
		return TooShort
	case n > MaxWords:
		return TooLong
	}
	if hasBlacklisted(text) {
		return Keyword
	}
	if strings.HasPrefix(text, "Write a program") {
		return Program
	}
	r, _ := utf8.DecodeRuneInString(text)
	if r < utf8.RuneSelf && strings.IndexByte(pyPunctuation, byte(r)) >= 0 {
		return Punctuation
	}
	if text[0] >= utf8.RuneSelf {
		return NonASCII
	}
	return Accepted
}

// hasBlacklisted reports whether any Blacklist entry matches
// re.search(r"\b(word)\b", text, re.IGNORECASE).
func hasBlacklisted(text string) bool {
	rs := []rune(text)
	for _, w := range Blacklist {
		if findWord(rs, w) {
			return true
		}
	}
	return false
}

// findWord matches an ASCII keyword case-insensitively between \b
// boundaries. Every keyword starts and ends with a letter, so \b means the
// neighbouring characters are not word characters.
func findWord(rs []rune, w string) bool {
	n := len(w)
	for i := 0; i+n <= len(rs); i++ {
		if !foldEq(rs[i], w[0]) {
			continue
		}
		if i > 0 && isPyWord(rs[i-1]) {
			continue
		}
		if i+n < len(rs) && isPyWord(rs[i+n]) {
			continue
		}
		j := 0
		for j < n && foldEq(rs[i+j], w[j]) {
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}

// foldEq is re.IGNORECASE matching of one character against the lower-case
// ASCII pattern character c. Besides ASCII case, CPython's re also folds
// U+017F (long s) with s and U+0130/U+0131 (dotted/dotless I) with i.
func foldEq(r rune, c byte) bool {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r == rune(c)
	}
	switch c {
	case 's':
		return r == 0x017F
	case 'i':
		return r == 0x0130 || r == 0x0131
	}
	return false
}

// Candidate is one question parsed from a completion and what the filters
// made of it.
type Candidate struct {
	Text   string  // cleaned text (whitespace collapsed, capitalised)
	Reason Reason  // Accepted, or the first filter that rejected it
	Score  float64 // highest ROUGE-L F1 against the pool; 0 unless the ROUGE check ran
	Match  int     // pool index of the most similar problem, -1 unless known
}

// ParseCompletion extracts the numbered questions of a completion, cleans
// them and applies the rule filters (not ROUGE-L, which needs a pool). An
// empty completion yields no candidates.
func ParseCompletion(completion string, mode Capitalization) []Candidate {
	qs := ExtractQuestions(completion)
	out := make([]Candidate, len(qs))
	for i, q := range qs {
		t := Clean(q, mode)
		out[i] = Candidate{Text: t, Reason: CheckRules(t), Match: -1}
	}
	return out
}
