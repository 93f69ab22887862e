package mathans

import (
	"strings"
	"unicode/utf8"
)

type tkind uint8

const (
	tEOF   tkind = iota
	tNum         // text: digits with optional decimal point
	tSym         // text: variable name (one letter, Greek name, unknown command)
	tCmd         // text: a command the parser knows (frac, sqrt, pi, sin, ...)
	tOp          // text: one of + - * / ^ _ ! % : | ( ) [ ] { } '
	tRel         // text: = < <= > >= != ~ in
	tSep         // list separator: , ; and or
	tLSet        // \{
	tRSet        // \}
	tAmp         // &
	tRow         // \\ (matrix row)
	tText        // text: content of \text{...} and friends
	tBegin       // text: environment name
	tEnd         // text: environment name
)

type token struct {
	k    tkind
	text string
}

var cmdKinds = map[string]tkind{
	"frac": tCmd, "binom": tCmd, "sqrt": tCmd, "pi": tCmd, "infty": tCmd, "infin": tCmd,
	"cdot": tCmd, "times": tCmd, "div": tCmd, "ast": tCmd, "pm": tCmd, "mp": tCmd, "cup": tCmd,
	"sin": tCmd, "cos": tCmd, "tan": tCmd, "sec": tCmd, "csc": tCmd, "cot": tCmd,
	"arcsin": tCmd, "arccos": tCmd, "arctan": tCmd, "sinh": tCmd, "cosh": tCmd, "tanh": tCmd,
	"log": tCmd, "ln": tCmd, "exp": tCmd, "mathbb": tCmd, "emptyset": tCmd, "varnothing": tCmd,
}

var relCmds = map[string]string{
	"le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=",
	"lt": "<", "gt": ">", "ne": "!=", "neq": "!=", "approx": "~", "in": "in",
}

var textCmds = map[string]bool{
	"text": true, "textbf": true, "textit": true, "textrm": true, "textnormal": true, "mbox": true,
	"mathrm": true, "mathbf": true, "mathit": true, "boldsymbol": true, "bm": true, "textsf": true,
	"mathsf": true, "operatorname": true, "textup": true, "emph": true,
}

var funcNames = map[string]bool{
	"sin": true, "cos": true, "tan": true, "sec": true, "csc": true, "cot": true,
	"arcsin": true, "arccos": true, "arctan": true, "sinh": true, "cosh": true, "tanh": true,
	"log": true, "ln": true, "exp": true,
}

// Commands that carry no value and are dropped.
var ignoredCmds = map[string]bool{
	"limits": true, "nolimits": true, "mathop": true, "ensuremath": true,
}

var unicodeMap = map[rune]string{
	'π': `\pi`, '∞': `\infty`, '√': `\sqrt`, '≤': `\le`, '≥': `\ge`, '≠': `\ne`, '±': `\pm`,
	'×': `\times`, '÷': `\div`, '·': `\cdot`, '∪': `\cup`, '∈': `\in`, '≈': `\approx`, '⋅': `\cdot`,
}

// tokenize splits a normalised answer into tokens. It returns ok=false when
// the input is too long or contains something it cannot represent; that
// answer then has no value form (string fallback only).
func tokenize(s string) ([]token, bool) {
	if len(s) > maxAnswerLen {
		return nil, false
	}
	toks := make([]token, 0, 16)
	add := func(k tkind, t string) bool {
		toks = append(toks, token{k, t})
		return len(toks) <= maxTokens
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j < len(s) && s[j] == '.' && j+1 < len(s) && isDigit(s[j+1]) {
				j++
				for j < len(s) && isDigit(s[j]) {
					j++
				}
			}
			if !add(tNum, s[i:j]) {
				return nil, false
			}
			i = j
		case isLetter(c):
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			w := s[i:j]
			switch {
			case w == "and" || w == "or":
				if !add(tSep, w) {
					return nil, false
				}
			case funcNames[w] && w != "exp":
				if !add(tCmd, w) {
					return nil, false
				}
			default:
				// Outside a command each letter is its own variable (math mode).
				for k := 0; k < len(w); k++ {
					if !add(tSym, w[k:k+1]) {
						return nil, false
					}
				}
			}
			i = j
		case c == '\\':
			if i+1 >= len(s) {
				return nil, false
			}
			d := s[i+1]
			if !isLetter(d) {
				switch d {
				case '{':
					add(tLSet, "")
				case '}':
					add(tRSet, "")
				case '\\':
					add(tRow, "")
				case '|':
					add(tOp, "|")
				default:
					return nil, false
				}
				i += 2
				if len(toks) > maxTokens {
					return nil, false
				}
				continue
			}
			j := i + 1
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			name := s[i+1 : j]
			i = j
			ok := true
			switch {
			case textCmds[name]:
				arg, n, good := braceArg(s, i)
				if !good {
					return nil, false
				}
				i = n
				ok = addText(&toks, name, arg)
			case name == "begin" || name == "end":
				arg, n, good := braceArg(s, i)
				if !good {
					return nil, false
				}
				i = n
				if name == "begin" && arg == "array" {
					// Skip the column specification `{cc}`.
					if _, n2, good := braceArg(s, i); good {
						i = n2
					}
				}
				if name == "begin" {
					ok = add(tBegin, arg)
				} else {
					ok = add(tEnd, arg)
				}
			case relCmds[name] != "":
				ok = add(tRel, relCmds[name])
			case cmdKinds[name] != 0:
				ok = add(tCmd, name)
			case name == "cr":
				ok = add(tRow, "")
			case name == "langle":
				ok = add(tOp, "(")
			case name == "rangle":
				ok = add(tOp, ")")
			case name == "lvert" || name == "rvert" || name == "vert":
				ok = add(tOp, "|")
			case ignoredCmds[name]:
			default:
				// Greek letters and unknown commands are opaque symbols; an
				// argument in braces is part of the name (`\overline{AB}`).
				sym := `\` + name
				if i < len(s) && s[i] == '{' {
					arg, n, good := braceArg(s, i)
					if !good {
						return nil, false
					}
					sym += "{" + strings.ReplaceAll(arg, " ", "") + "}"
					i = n
				}
				ok = add(tSym, sym)
			}
			if !ok {
				return nil, false
			}
		case c == '<' || c == '>' || c == '=' || c == '!' && i+1 < len(s) && s[i+1] == '=':
			op := string(c)
			if i+1 < len(s) && s[i+1] == '=' && c != '=' {
				op += "="
				i++
			}
			i++
			if !add(tRel, op) {
				return nil, false
			}
		case c == ',' || c == ';':
			if !add(tSep, string(c)) {
				return nil, false
			}
			i++
		case c == '&':
			if !add(tAmp, "") {
				return nil, false
			}
			i++
		case strings.IndexByte("+-*/^_!%:|()[]{}'", c) >= 0:
			if !add(tOp, string(c)) {
				return nil, false
			}
			i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			i += n
			if m, ok := unicodeMap[r]; ok {
				sub, good := tokenize(m)
				if !good {
					return nil, false
				}
				toks = append(toks, sub...)
			} else if r == '²' || r == '³' {
				toks = append(toks, token{tOp, "^"}, token{tNum, map[rune]string{'²': "2", '³': "3"}[r]})
			} else {
				toks = append(toks, token{tSym, string(r)})
			}
			if len(toks) > maxTokens {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return toks, true
}

// addText turns \text{...}-like commands into tokens: numbers and single
// letters are inlined (`\mathbf{x}`, `\text{5}`), separator words become
// separators, anything else is a text token.
func addText(toks *[]token, name, arg string) bool {
	a := strings.TrimSpace(arg)
	switch {
	case a == "":
		return true
	case a == "and" || a == "or" || a == ",":
		*toks = append(*toks, token{tSep, a})
	case name == "operatorname" && funcNames[a]:
		*toks = append(*toks, token{tCmd, a})
	case len(a) == 1 && isLetter(a[0]) && name != "text" && name != "textbf" && name != "mbox":
		*toks = append(*toks, token{tSym, a})
	case isNumberText(a):
		sub, ok := tokenize(a)
		if !ok {
			return false
		}
		*toks = append(*toks, sub...)
	default:
		*toks = append(*toks, token{tText, a})
	}
	return len(*toks) <= maxTokens
}

func isNumberText(a string) bool {
	if a == "" {
		return false
	}
	for i := 0; i < len(a); i++ {
		if !isDigit(a[i]) && a[i] != '.' {
			return false
		}
	}
	return true
}

// braceArg reads a balanced {...} argument starting at s[i] (after optional
// spaces). It returns the content and the index after the closing brace.
func braceArg(s string, i int) (string, int, bool) {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || s[i] != '{' {
		return "", i, false
	}
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++ // skip escaped char, including \{ and \}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[i+1 : j], j + 1, true
			}
		}
	}
	return "", i, false
}
