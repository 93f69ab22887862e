package mathans

import (
	"regexp"
	"strings"
)

// maxResponse bounds the text searched: answers sit at the end, so only the
// tail of a longer response is considered.
const maxResponse = 64 << 10

// Extract finds the final answer in a model response: the last \boxed{}
// (boxes separated only by "and"/commas are one list answer), else a "final
// answer is …" sentence, else "answer: …", else the last LaTeX environment
// or number, whichever ends later. Answer.Rule is RuleNone when nothing is
// found.
func Extract(response string) Answer { return extract(response, true) }

func extract(s string, numbers bool) Answer {
	if len(s) > maxResponse {
		s = s[len(s)-maxResponse:]
	}
	if boxes := findBoxes(s); len(boxes) > 0 {
		return build(joinBoxes(s, boxes), RuleBoxed)
	}
	if seg, ok := finalAnswerSeg(s); ok {
		if c, ok := segCandidate(seg); ok {
			if a := build(c, RuleFinalAnswer); len(a.alts) > 0 {
				return a
			}
		}
	}
	if seg, ok := answerColonSeg(s); ok {
		if c, ok := segCandidate(seg); ok {
			if a := build(c, RuleAnswerColon); len(a.alts) > 0 {
				return a
			}
		}
	}
	envs := findEnvs(s)
	envEnd := 0
	if len(envs) > 0 {
		envEnd = envs[len(envs)-1].end
	}
	if numbers {
		if c, ok := lastNumber(s[envEnd:]); ok {
			if a := build(c, RuleLastNumber); len(a.alts) > 0 {
				return a
			}
		}
	}
	for i := len(envs) - 1; i >= 0 && i >= len(envs)-20; i-- {
		if a := build(joinBoxes(s, envs[:i+1]), RuleLatexEnv); len(a.alts) > 0 {
			return a
		}
	}
	if numbers {
		if c, ok := lastNumber(s); ok {
			if a := build(c, RuleLastNumber); len(a.alts) > 0 {
				return a
			}
		}
	}
	if len(envs) > 0 {
		// Nothing parses: keep the last environment for the string fallback.
		return build(envs[len(envs)-1].content, RuleLatexEnv)
	}
	return Answer{}
}

type span struct {
	start, end int
	content    string
}

// findBoxes returns the outermost \boxed/\fbox arguments in order.
func findBoxes(s string) []span {
	var out []span
	i := 0
	hasFbox := strings.Contains(s, `\fbox`)
	for len(out) < 1000 {
		j := strings.Index(s[i:], `\boxed`)
		k := -1
		if hasFbox {
			k = strings.Index(s[i:], `\fbox`)
		}
		n := len(`\boxed`)
		if j < 0 || (k >= 0 && k < j) {
			j, n = k, len(`\fbox`)
		}
		if j < 0 {
			break
		}
		start := i + j
		p := start + n
		if p < len(s) && isLetter(s[p]) { // \boxedfoo is another command
			i = p
			continue
		}
		if arg, e, ok := braceArg(s, p); ok {
			out = append(out, span{start, e, arg})
			i = e
			continue
		}
		// `\boxed 5`: one space-delimited token.
		q := p
		for q < len(s) && s[q] == ' ' {
			q++
		}
		r := q
		for r < len(s) && !strings.ContainsRune(" \n\t$", rune(s[r])) {
			r++
		}
		if r > q && q > p {
			tok := strings.TrimRight(s[q:r], ".,;")
			if tok != "" {
				out = append(out, span{start, r, tok})
				i = r
				continue
			}
		}
		i = p
	}
	return out
}

var (
	reGapAssign = regexp.MustCompile(`(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\([A-Za-z, ]+\))\s*=\s*$`)
	reGapDelims = strings.NewReplacer(`\(`, " ", `\)`, " ", `\[`, " ", `\]`, " ", "$", " ", `\quad`, " ", `\qquad`, " ",
		`\,`, " ", `\ `, " ", "~", " ", `\text{`, " ", `\textbf{`, " ", `\mbox{`, " ", "{", " ", "}", " ")
)

// joinBoxes returns the last box (or environment), joined with the boxes before it when only
// list words separate them (`\boxed{1} and \boxed{2}`, `\boxed{k=4},
// \boxed{n=2}`), as one comma list.
func joinBoxes(s string, boxes []span) string {
	parts := []string{boxes[len(boxes)-1].content}
	for i := len(boxes) - 1; i > 0 && len(parts) < 10; i-- {
		if boxes[i-1].end > boxes[i].start || !isJoinGap(s[boxes[i-1].end:boxes[i].start]) {
			break
		}
		parts = append(parts, boxes[i-1].content)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
		parts[l], parts[r] = parts[r], parts[l]
	}
	return strings.Join(parts, ", ")
}

func isJoinGap(g string) bool {
	if len(g) > 80 {
		return false
	}
	g = reGapDelims.Replace(g)
	g = reGapAssign.ReplaceAllString(g, "")
	// One word may name the previous answer's unit ("\boxed{1} papers and
	// \boxed{2} bins"); a word after the separator ("and so", "and later")
	// means the text moved on.
	sep := false
	others := 0
	for _, w := range strings.FieldsFunc(g, func(r rune) bool { return r == ' ' || r == '\n' || r == '.' }) {
		lw := strings.ToLower(strings.Trim(w, ",;"))
		if lw == "and" || lw == "or" || lw == "" {
			sep = true
			continue
		}
		if sep || strings.ContainsAny(w, "0123456789=\\") {
			return false
		}
		if strings.ContainsAny(w, ",;") {
			sep = true
		}
		others++
	}
	return (sep || strings.ContainsAny(g, ",;")) && others <= 1
}

// lastIndexFold is strings.LastIndex with ASCII case folding of s.
func lastIndexFold(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// sentence returns s up to the end of its first sentence (a full stop,
// newline or "I hope" outside math), capped in length.
func sentence(s string) string {
	if len(s) > 400 {
		s = s[:400]
	}
	inMath := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if s[i+1] == '(' || s[i+1] == '[' {
				inMath = true
			} else if s[i+1] == ')' || s[i+1] == ']' {
				inMath = false
			}
			i++
		case c == '$':
			inMath = !inMath
		case inMath:
		case c == '\n':
			return s[:i]
		case c == '.' && (i+1 == len(s) || s[i+1] == ' ' || s[i+1] == '\n'):
			return s[:i]
		case (c == 'I' || c == 'i') && strings.HasPrefix(strings.ToLower(s[i:]), "i hope"):
			return s[:i]
		}
	}
	return s
}

func finalAnswerSeg(s string) (string, bool) {
	i := lastIndexFold(s, "final answer")
	if i < 0 {
		return "", false
	}
	seg := sentence(s[i+len("final answer"):])
	if k := lastIndexFold(seg, " is "); k >= 0 {
		seg = seg[k+4:]
	} else if k := lastIndexFold(seg, "is "); k == 0 || k == 1 {
		seg = seg[k+3:]
	}
	seg = strings.TrimLeft(seg, " :=\t")
	return seg, strings.TrimSpace(seg) != ""
}

func answerColonSeg(s string) (string, bool) {
	end := len(s)
	for tries := 0; tries < 50; tries++ {
		i := lastIndexFold(s[:end], "answer")
		if i < 0 {
			return "", false
		}
		j := i + len("answer")
		for j < len(s) && (s[j] == ' ' || s[j] == '*') {
			j++
		}
		if j < len(s) && s[j] == ':' {
			seg := sentence(s[j+1:])
			if k := lastIndexFold(seg, " is "); k >= 0 {
				seg = seg[k+4:]
			}
			seg = strings.TrimSpace(strings.TrimLeft(seg, " *="))
			return seg, seg != ""
		}
		end = i
	}
	return "", false
}

var reWord = regexp.MustCompile(`(?:^|[^\\A-Za-z])[A-Za-z]{3,}`)

// segCandidate picks the answer inside an "answer is …" sentence: its last
// LaTeX environment, the sentence itself when it is a formula, or the first
// number of a sentence in words.
func segCandidate(seg string) (string, bool) {
	if envs := findEnvs(seg); len(envs) > 0 {
		return envs[len(envs)-1].content, true
	}
	seg = strings.TrimSpace(seg)
	if !reWord.MatchString(seg) {
		return seg, seg != ""
	}
	if m := reNumber.FindStringSubmatchIndex(seg); m != nil {
		return numberText(seg, m), true
	}
	return "", false
}

// findEnvs returns the complete LaTeX math environments of s in order.
func findEnvs(s string) []span {
	var out []span
	for i := 0; i < len(s) && len(out) < 5000; i++ {
		c := s[i]
		var open, close string
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '(':
			open, close = `\(`, `\)`
		case c == '\\' && i+1 < len(s) && s[i+1] == '[':
			open, close = `\[`, `\]`
		case c == '\\':
			i++ // escaped character, including \$
			continue
		case c == '$' && i+1 < len(s) && s[i+1] == '$':
			open, close = "$$", "$$"
		case c == '$':
			open, close = "$", "$"
		default:
			continue
		}
		start := i + len(open)
		e := indexUnescaped(s[start:], close)
		if e < 0 {
			i = start - 1
			continue
		}
		out = append(out, span{i, start + e + len(close), s[start : start+e]})
		i = start + e + len(close) - 1
	}
	return out
}

// indexUnescaped finds sub in s, skipping backslash escapes (so `\$` is not
// a closing `$`).
func indexUnescaped(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i] == '\\' && sub[0] != '\\' {
			i++
			continue
		}
		if s[i] == sub[0] && s[i:i+len(sub)] == sub {
			return i
		}
		if s[i] == '\\' {
			i++
		}
	}
	return -1
}

// reNumber: a number anchored by start, space, `=`, `(`, `:` or `$`, with
// optional thousands separators, decimals and a percent suffix.
var reNumber = regexp.MustCompile(`(?:^|[\s=(:$])(-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|[1-9]\d{0,2}(?: \d{3})+\b|\d+(?:[.,]\d+)?|\.\d+))(\s*(?:%|\\%|pct\b|percent\b))?`)

func numberText(s string, m []int) string {
	t := s[m[2]:m[3]]
	if m[4] >= 0 {
		t += "%"
	}
	return t
}

func lastNumber(s string) (string, bool) {
	if len(s) > 4096 {
		s = s[len(s)-4096:]
	}
	ms := reNumber.FindAllStringSubmatchIndex(s, -1)
	if len(ms) == 0 {
		return "", false
	}
	return numberText(s, ms[len(ms)-1]), true
}
