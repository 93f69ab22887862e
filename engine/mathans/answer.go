// Package mathans extracts final answers from model responses, normalises
// their LaTeX and compares them by value, in the spirit of Math-Verify
// (docs/SERL.md §3.2–3.3) but in pure Go. Parse once (Extract, ParseGold), then
// compare cheaply (Same). Anything undecidable compares as "not equal".
package mathans

import "strings"

// Rule says which extraction rule produced an answer.
type Rule int

const (
	RuleNone        Rule = iota // nothing found
	RuleBoxed                   // last \boxed{…}/\fbox{…} (adjacent boxes joined)
	RuleFinalAnswer             // "final answer is …"
	RuleAnswerColon             // "answer: …"
	RuleLatexEnv                // last $…$, \(…\), \[…\], $$…$$
	RuleLastNumber              // last number in the text
	RuleBare                    // a gold label parsed as a bare LaTeX answer (ParseGold)
)

func (r Rule) String() string {
	switch r {
	case RuleNone:
		return "none"
	case RuleBoxed:
		return "boxed"
	case RuleFinalAnswer:
		return "final-answer"
	case RuleAnswerColon:
		return "answer-colon"
	case RuleLatexEnv:
		return "latex-env"
	case RuleLastNumber:
		return "last-number"
	case RuleBare:
		return "bare"
	}
	return "unknown"
}

// Answer is an extracted, parsed answer. Raw is the extracted text.
type Answer struct {
	Raw  string
	Rule Rule
	norm string // compact normalised text: the string fallback
	alts []*val // value readings; any one matching is a match
}

// Valid reports whether the answer has anything to compare.
func (a Answer) Valid() bool { return a.Rule != RuleNone && (a.norm != "" || len(a.alts) > 0) }

// Same reports whether two answers are the same answer: equal normalised
// text, or equal value under any of their readings. Symmetric; false if
// either is invalid. No parsing happens here.
func Same(a, b Answer) bool {
	if !a.Valid() || !b.Valid() {
		return false
	}
	if a.norm != "" && a.norm == b.norm {
		return true
	}
	for _, x := range a.alts {
		for _, y := range b.alts {
			if eqVal(x, y, 0) {
				return true
			}
		}
	}
	return false
}

// Equivalent is the rule-based reward's test (docs/SERL.md §3.4, D7
// and D10): the gold label is parsed with ParseGold, the answer is extracted
// from the response only, and the two are compared by value. Both of
// Math-Verify's directions reduce to one symmetric Same.
func Equivalent(gold, pred string) bool {
	return Same(ParseGold(gold), Extract(pred))
}

// ParseGold parses a gold label. A label with a box, a LaTeX environment or
// a "final answer" sentence is extracted like a response; any other label
// is a bare LaTeX answer (`\frac{\pi}{2}`, `(-3,4)`, `[4,\infty)`), so that
// every labelled problem can be graded (docs/SERL.md D10).
func ParseGold(label string) Answer {
	if a := extract(label, false); a.Rule != RuleNone && a.Rule != RuleLastNumber && a.Rule != RuleAnswerColon {
		return a
	}
	return build(label, RuleBare)
}

// ParseAnswer parses a prediction that may be a whole response or a bare answer, as a person gives one
// to `serl grade`: what Extract finds by a box, a LaTeX environment or an answer sentence wins; text in
// which it finds nothing (`\frac12`, `x+1`), or only a last number while the text has no words
// outside LaTeX commands (`1/2`, `(1,2)`, `3\sqrt{2}`), is read whole as a bare answer, like a gold
// label. Rewards keep Extract alone: a model's response is never a bare answer.
func ParseAnswer(text string) Answer {
	a := Extract(text)
	switch {
	case a.Rule == RuleNone:
	case a.Rule == RuleLastNumber && !hasWords(text):
	default:
		return a
	}
	if b := build(strings.TrimSpace(text), RuleBare); b.Valid() {
		return b
	}
	return a
}

// hasWords reports whether text has a word of two or more letters outside the names of LaTeX commands
// (\sqrt, \pi): prose such as "5 apples" keeps its last number, while `x + 1` is an answer.
func hasWords(text string) bool {
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	run := 0
	for i := 0; i < len(text); i++ {
		switch {
		case text[i] == '\\':
			for i+1 < len(text) && isLetter(text[i+1]) {
				i++
			}
			run = 0
		case isLetter(text[i]):
			if run++; run >= 2 {
				return true
			}
		default:
			run = 0
		}
	}
	return false
}

var boxReplacer = strings.NewReplacer(`\boxed`, "", `\fbox`, "")

// build normalises and parses one extracted answer text.
func build(raw string, rule Rule) Answer {
	a := Answer{Raw: raw, Rule: rule}
	if len(raw) > maxAnswerLen {
		a.Rule = RuleNone
		return a
	}
	s := normalize(boxReplacer.Replace(raw))
	a.norm = compact(s)
	a.alts = readings(s)
	if a.norm == "" && len(a.alts) == 0 {
		a.Rule = RuleNone
	}
	return a
}

// readings returns the value readings of a normalised answer.
func readings(s string) []*val {
	var out []*val
	add := func(s string) {
		n := parseAnswer(s)
		vs := compile(n, 0)
		switch {
		case len(vs) == 1:
			out = append(out, vs[0])
		case len(vs) > 1:
			// `1 \pm \sqrt{2}` alone is the set of its two values.
			out = append(out, &val{k: vSet, elems: dedupe(vs)})
		}
		// `28\%` also reads as 28 (Math-Verify accepts both).
		if n != nil && n.k == nExpr && n.e.op == ePct {
			if vs := compile(&node{k: nExpr, e: n.e.a}, 0); len(vs) == 1 {
				out = append(out, vs[0])
			}
		}
	}
	flat := strings.ReplaceAll(s, " ", "")
	numeric := strings.IndexByte(flat, ',') >= 0 || strings.IndexByte(s, ' ') >= 0
	switch {
	case !numeric:
		add(s)
	case reWholeThousands.MatchString(flat):
		add(strings.ReplaceAll(flat, ",", ""))
	case reWholeSpaceThou.MatchString(s):
		add(flat)
	case reDecimalComma.MatchString(flat):
		// `1,22` is a decimal comma in much of the world and a list in
		// MATH; both readings are kept.
		add(s)
		add(strings.Replace(flat, ",", ".", 1))
	default:
		add(s)
	}
	if strings.IndexByte(s, '\\') < 0 && reWordsOnly.MatchString(s) {
		out = append(out, &val{k: vText, text: normText(s)})
	}
	return out
}
