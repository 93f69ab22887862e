package mathans

import (
	"regexp"
	"strings"
)

// Limits that bound the work per input. Answers longer than maxAnswerLen are
// not answers a model means to give; refusing them keeps parsing O(small).
const (
	maxAnswerLen = 2000
	maxTokens    = 600
	maxDepth     = 48
)

// knownCmds are commands that may appear with a doubled backslash in labels
// that went through one escaping too many (`\\frac` for `\frac`).
var knownCmds = map[string]bool{
	"left": true, "right": true, "frac": true, "dfrac": true, "tfrac": true, "cfrac": true,
	"sqrt": true, "pi": true, "infty": true, "cdot": true, "times": true, "text": true,
	"mathrm": true, "begin": true, "end": true, "pm": true, "mp": true, "le": true, "ge": true,
	"leq": true, "geq": true, "cup": true, "sin": true, "cos": true, "tan": true, "log": true,
	"ln": true, "boxed": true, "in": true, "circ": true, "mbox": true, "sec": true, "csc": true, "cot": true,
}

var (
	// Digit-group separators that LaTeX authors use inside numbers: `14{,}916`,
	// `11,\!111`, `1\,000`, `14 {, }916`.
	reGroupSep = regexp.MustCompile(`(\d)\s*(?:,\\!|\{\s*,\s*\}|\\,|\\!|,\\,|,\\ )\s*(\d{3})`)
	// `^\circ`, `^{\circ}`, `^{\circ }` and friends.
	reDegree         = regexp.MustCompile(`\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree`)
	reSpacing        = regexp.MustCompile(`\\(?:qquad|quad|displaystyle|textstyle|scriptstyle|[,;:> ])|\\hspace\*?\{[^{}]*\}|~`)
	reSizing         = regexp.MustCompile(`\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|bigg|Bigg|big|Big)(?:\b|\s*([.]))`)
	rePctWord        = regexp.MustCompile(`(?i)\s*(?:\\%|%|\bpct\b|\bpercent\b)\.?\s*$`)
	reWholeThousands = regexp.MustCompile(`^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?%?$`)
	reWholeSpaceThou = regexp.MustCompile(`^[-+]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?%?$`)
	reDecimalComma   = regexp.MustCompile(`^[-+]?\d+,\d+%?$`)
	reWordsOnly      = regexp.MustCompile(`^\(?[A-Za-z][A-Za-z ]*\)?$`)
)

var normReplacer = strings.NewReplacer(`\dfrac`, `\frac`, `\tfrac`, `\frac`, `\cfrac`, `\frac`,
	`\dbinom`, `\binom`, `\tbinom`, `\binom`, `\$`, "", "$", "", `\!`, "",
	`\%`, "%", "−", "-", "\n", " ", "\r", " ", "\t", " ")

var escReplacer = strings.NewReplacer("\x0c", `\f`, "\x08", `\b`, "\x07", `\a`)

// fixEscapes repairs control characters produced by one escape too few
// (`"\frac"` read by a JSON/Python layer becomes form feed + "rac") and
// backslashes doubled by one escape too many.
func fixEscapes(s string) string {
	if strings.ContainsAny(s, "\x0c\x08\x07") {
		s = escReplacer.Replace(s)
	}
	if !strings.Contains(s, `\\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+2 < len(s) && s[i+1] == '\\' && isLetter(s[i+2]) && (i == 0 || s[i-1] != '\\') {
			j := i + 2
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			if knownCmds[s[i+2:j]] {
				b.WriteByte('\\')
				b.WriteString(s[i+2 : j])
				i = j - 1
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// normalize applies the string-level rewrites of Qwen2.5-Math's strip_string
// family before tokenising. It never changes a value: every rewrite removes
// notation (sizing, spacing, units of angle, digit grouping) only.
func normalize(s string) string {
	s = fixEscapes(s)
	// Protect matrix row breaks from the spacing rules (`\\ 0` is not `\ `).
	s = strings.ReplaceAll(s, `\\`, ` \cr `)
	s = strings.TrimSpace(s)
	// The regexp passes are guarded by cheap substring tests: most answers
	// need none of them, and Extract runs on every response of a group.
	hasCmd := strings.IndexByte(s, '\\') >= 0
	if hasCmd && (strings.Contains(s, `\left`) || strings.Contains(s, `\right`) || strings.Contains(s, `\big`) || strings.Contains(s, `\Big`)) {
		s = reSizing.ReplaceAllString(s, "")
	}
	if strings.IndexByte(s, ',') >= 0 || hasCmd {
		for i := 0; i < 8 && reGroupSep.MatchString(s); i++ {
			s = reGroupSep.ReplaceAllString(s, "$1$2")
		}
	}
	s = normReplacer.Replace(s)
	if strings.Contains(s, "circ") || strings.Contains(s, "°") || strings.Contains(s, "degree") {
		s = reDegree.ReplaceAllString(s, "")
	}
	if strings.IndexByte(s, '\\') >= 0 || strings.IndexByte(s, '~') >= 0 {
		s = reSpacing.ReplaceAllString(s, " ")
	}
	s = strings.TrimSpace(s)
	for len(s) > 0 && (s[len(s)-1] == '.' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if strings.IndexByte(s, '%') >= 0 || strings.Contains(s, "pct") || strings.Contains(s, "ercent") {
		s = rePctWord.ReplaceAllString(s, "") + "%"
	}
	return s
}

// compact is the string-fallback form: two answers whose compact forms agree
// are the same answer whatever their value parse says (Math-Verify's string
// fallback).
func compact(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' {
			return -1
		}
		return r
	}, s)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
