package arith

import (
	"math/big"
	"strings"
)

// owner is a holder of quantities: a person, an agent ("the printer"), or
// "it" (resolved to the last agent mentioned).
type owner struct {
	key   string // lower case: the identity
	disp  string // as written for people; the bare noun for agents
	agent bool
}

func (o owner) render() string {
	if o.agent {
		return "the " + o.disp
	}
	return o.disp
}

// frac is a small non-negative rational: a fraction word or a multiplier.
type frac struct{ num, den int64 }

// stmt is one sentence's meaning: the structured form the generator renders
// and the checker recovers.
type stmt struct {
	kind          kind
	P, Q          owner
	L             []owner
	N, M, K       int64
	O, C, G, U, T string // noun keys (singular)
	V             string // verb base form
	F, X          frac
	D             string   // a weekday (only flavour)
	R             string   // the time unit of a rate ("per {t}"), apart from {T}
	E             string   // expression text (rendering)
	ev            *big.Rat // expression value (parsing)
	they          bool     // {L} was "they"
}

// Slot parsers. Each returns how many tokens it consumed (0 = no match).

func ownerTok(t token) (owner, bool) {
	if t.kind != tWord {
		return owner{}, false
	}
	if t.low == "it" {
		return owner{key: "it"}, true
	}
	if n, ok := nounByForm[t.low]; ok {
		if n.cat == catAgent && n.sing == t.low {
			return owner{key: "@" + n.sing, disp: n.sing, agent: true}, true
		}
		return owner{}, false
	}
	if nameSet[t.low] {
		return owner{key: t.low, disp: t.s}, true
	}
	// Any capitalised word that is not part of the grammar is a name, so a
	// model may invent people.
	if t.s[0] >= 'A' && t.s[0] <= 'Z' && len(t.s) >= 2 && !grammarWords[t.low] {
		return owner{key: t.low, disp: t.s}, true
	}
	return owner{}, false
}

func nounTok(t token) (string, bool) {
	if t.kind != tWord {
		return "", false
	}
	if n, ok := nounByForm[t.low]; ok {
		return n.sing, true
	}
	if t.low == "money" {
		return "dollar", true
	}
	// Unknown lower-case words are nouns a model made up ("mangoes").
	if t.s[0] >= 'a' && t.s[0] <= 'z' && len(t.s) >= 3 && !grammarWords[t.low] && !nameSet[t.low] {
		return singular(t.low), true
	}
	return "", false
}

// verbAt matches a verb of the given classes at toks[i:]; third selects the
// third-person form ("prints") over the base form ("print").
func verbAt(toks []token, i int, class int, third bool) (string, int) {
	for k := range verbs {
		v := &verbs[k]
		if v.class&class == 0 {
			continue
		}
		f := v.base
		if third {
			f = v.third
		}
		ws := strings.Fields(f)
		if i+len(ws) > len(toks) {
			continue
		}
		ok := true
		for j, w := range ws {
			if toks[i+j].kind != tWord || toks[i+j].low != w {
				ok = false
				break
			}
		}
		if ok {
			return v.base, len(ws)
		}
	}
	return "", 0
}

// fracAt reads "half", "two thirds", "third" (a third, article dropped),
// "3/4".
func fracAt(toks []token, i int) (frac, int) {
	if i >= len(toks) {
		return frac{}, 0
	}
	t := toks[i]
	if t.kind == tNum && i+2 < len(toks) && toks[i+1].low == "/" && toks[i+2].kind == tNum {
		d := toks[i+2].num
		if d > 0 && t.num > 0 && t.num < d {
			return frac{t.num, d}, 3
		}
		return frac{}, 0
	}
	if t.kind != tWord {
		return frac{}, 0
	}
	if n, ok := numWords[t.low]; ok && i+1 < len(toks) {
		if d, ok := denWords[toks[i+1].low]; ok && n < d {
			// "one thirds" and "two third" are tolerated: the meaning is clear.
			return frac{n, d}, 2
		}
	}
	if d, ok := denWords[t.low]; ok {
		return frac{1, d}, 1
	}
	return frac{}, 0
}

// multAt reads a multiplier: "twice", "3 times", "three times", or a fraction.
func multAt(toks []token, i int) (frac, int) {
	if i >= len(toks) {
		return frac{}, 0
	}
	t := toks[i]
	if t.low == "twice" {
		return frac{2, 1}, 1
	}
	if i+1 < len(toks) && toks[i+1].low == "times" {
		if t.kind == tNum && t.num >= 2 {
			return frac{t.num, 1}, 2
		}
		if n, ok := numWords[t.low]; ok && n >= 2 {
			return frac{n, 1}, 2
		}
	}
	return fracAt(toks, i)
}

func isDay(t token) bool {
	for _, d := range days {
		if strings.EqualFold(d, t.s) {
			return true
		}
	}
	return false
}

// match tries pattern p against the whole of toks.
func match(p *pattern, toks []token) (stmt, bool) {
	s, ok := matchFrom(p.toks, toks, stmt{kind: p.kind})
	if ok && s.kind == qHave && s.O == "" {
		s.O = "dollar" // "How much money does Sam have left?"
	}
	if ok && s.V == "" && p.buys {
		s.V = "buy" // "{P} buys {K} {C} of {O}": containers bought, not given
	}
	return s, ok
}

func matchFrom(ps []ptok, toks []token, s stmt) (stmt, bool) {
	if len(ps) == 0 {
		return s, len(toks) == 0
	}
	if len(toks) == 0 {
		return s, false
	}
	pt, t := ps[0], toks[0]
	if pt.slot == "" {
		if t.low != pt.lit {
			return s, false
		}
		return matchFrom(ps[1:], toks[1:], s)
	}
	switch pt.slot {
	case "P", "Q":
		o, ok := ownerTok(t)
		if !ok {
			return s, false
		}
		if pt.slot == "P" {
			s.P = o
		} else {
			s.Q = o
		}
		return matchFrom(ps[1:], toks[1:], s)
	case "L":
		if t.low == "they" {
			s.they = true
			return matchFrom(ps[1:], toks[1:], s)
		}
		// name (name)* and name
		var list []owner
		j, sawAnd := 0, false
		for j < len(toks) {
			if toks[j].low == "and" && !sawAnd && len(list) > 0 {
				sawAnd = true
				j++
				continue
			}
			o, ok := ownerTok(toks[j])
			if !ok || o.key == "it" {
				break
			}
			list = append(list, o)
			j++
			if sawAnd {
				break
			}
		}
		if !sawAnd || len(list) < 2 || toks[j-1].low == "and" {
			return s, false
		}
		s.L = list
		return matchFrom(ps[1:], toks[j:], s)
	case "N", "M", "K":
		if t.kind != tNum {
			return s, false
		}
		switch pt.slot {
		case "N":
			s.N = t.num
		case "M":
			s.M = t.num
		default:
			s.K = t.num
		}
		return matchFrom(ps[1:], toks[1:], s)
	case "O", "o", "C", "c", "G", "g", "U", "u":
		n, ok := nounTok(t)
		if !ok {
			return s, false
		}
		switch strings.ToUpper(pt.slot) {
		case "O":
			if s.O != "" && s.O != n {
				return s, false // "{P} packs the {O} into {C} that hold {N} {O} each": same noun twice
			}
			s.O = n
		case "C":
			if s.C != "" && s.C != n {
				return s, false
			}
			s.C = n
		case "G":
			s.G = n
		default:
			s.U = n
		}
		return matchFrom(ps[1:], toks[1:], s)
	case "T", "t":
		n, ok := nounTok(t)
		if !ok || minutesIn[n] == 0 {
			return s, false
		}
		if pt.slot == "t" {
			s.R = n
		} else {
			s.T = n
		}
		return matchFrom(ps[1:], toks[1:], s)
	case "V+", "V-", "VR", "VD", "v":
		class := map[string]int{"V+": vAdd, "V-": vSub, "VR": vRate, "VD": vDur, "v": vAdd | vSub | vRate | vDur}[pt.slot]
		v, n := verbAt(toks, 0, class, pt.slot != "v")
		if n == 0 {
			return s, false
		}
		s.V = v
		return matchFrom(ps[1:], toks[n:], s)
	case "F":
		f, n := fracAt(toks, 0)
		if n == 0 {
			return s, false
		}
		s.F = f
		return matchFrom(ps[1:], toks[n:], s)
	case "X":
		f, n := multAt(toks, 0)
		if n == 0 {
			return s, false
		}
		s.X = f
		return matchFrom(ps[1:], toks[n:], s)
	case "D":
		if !isDay(t) {
			return s, false
		}
		s.D = t.s
		return matchFrom(ps[1:], toks[1:], s)
	case "E":
		if len(ps) != 1 {
			return s, false
		}
		v, ok := evalExpr(toks)
		if !ok {
			return s, false
		}
		s.ev = v
		return s, true
	}
	return s, false
}

// evalExpr evaluates + - * / and parentheses with the usual precedence, in
// exact rationals. It wants at least one operator: "What is 5?" is no problem.
func evalExpr(toks []token) (*big.Rat, bool) {
	e := exprParser{toks: toks}
	v, ok := e.sum(0)
	if !ok || e.i != len(toks) || e.ops == 0 {
		return nil, false
	}
	return v, true
}

type exprParser struct {
	toks []token
	i    int
	ops  int
}

func (e *exprParser) peekOp() string {
	if e.i >= len(e.toks) {
		return ""
	}
	t := e.toks[e.i]
	switch {
	case t.kind == tOp:
		return t.low
	case t.low == "plus":
		return "+"
	case t.low == "minus":
		return "-"
	case t.low == "times":
		return "*"
	case t.low == "divided" && e.i+1 < len(e.toks) && e.toks[e.i+1].low == "by":
		return "/"
	}
	return ""
}

func (e *exprParser) take() {
	if e.toks[e.i].low == "divided" {
		e.i++
	}
	e.i++
	e.ops++
}

func (e *exprParser) sum(depth int) (*big.Rat, bool) {
	v, ok := e.product(depth)
	for ok {
		op := e.peekOp()
		if op != "+" && op != "-" {
			break
		}
		e.take()
		var w *big.Rat
		if w, ok = e.product(depth); ok {
			if op == "+" {
				v.Add(v, w)
			} else {
				v.Sub(v, w)
			}
		}
	}
	return v, ok
}

func (e *exprParser) product(depth int) (*big.Rat, bool) {
	v, ok := e.atom(depth)
	for ok {
		op := e.peekOp()
		if op != "*" && op != "/" {
			break
		}
		e.take()
		var w *big.Rat
		if w, ok = e.atom(depth); ok {
			if op == "*" {
				v.Mul(v, w)
			} else if w.Sign() == 0 {
				ok = false
			} else {
				v.Quo(v, w)
			}
		}
	}
	return v, ok
}

func (e *exprParser) atom(depth int) (*big.Rat, bool) {
	if e.i >= len(e.toks) || depth > 20 {
		return nil, false
	}
	t := e.toks[e.i]
	if t.kind == tNum {
		e.i++
		return new(big.Rat).SetInt64(t.num), true
	}
	if t.low == "(" {
		e.i++
		v, ok := e.sum(depth + 1)
		if !ok || e.i >= len(e.toks) || e.toks[e.i].low != ")" {
			return nil, false
		}
		e.i++
		return v, true
	}
	return nil, false
}

// parseProblem reads a whole problem into statements, the last of which is
// its only question. alts holds other readings of that question, if any.
func parseProblem(text string) (ss []stmt, alts []stmt, ok bool) {
	toks := tokenize(text)
	if len(toks) == 0 || len(toks) > 400 {
		return nil, nil, false
	}
	var out []stmt
	start, lastStart, lastEnd := 0, 0, 0
	for i := 0; i <= len(toks); i++ {
		if i < len(toks) && toks[i].kind == tOther {
			return nil, nil, false // LaTeX, symbols, decimals: not this world
		}
		if i < len(toks) && toks[i].kind != tEnd {
			continue
		}
		if i > start {
			ss, ok := parseSentence(toks[start:i])
			if !ok {
				return nil, nil, false
			}
			out = append(out, ss...)
			lastStart, lastEnd = start, i
		}
		start = i + 1
	}
	if len(out) == 0 || !out[len(out)-1].kind.question() {
		return nil, nil, false
	}
	for _, s := range out[:len(out)-1] {
		if s.kind.question() {
			return nil, nil, false
		}
	}
	for _, s := range matchAll(toks[lastStart:lastEnd], 4) {
		if s.kind.question() && s.kind != out[len(out)-1].kind {
			alts = append(alts, s)
		}
	}
	return out, alts, true
}

// maxSentence bounds a sentence's tokens; the split search below is cubic.
const maxSentence = 64

// parseSentence matches one sentence whole, or else splits it at commas and
// "and" into clauses that each match ("Each box holds 4 bags, and each bag
// holds 6 marbles"), and reads "If S, Q?" as S then Q.
func parseSentence(raw []token) ([]stmt, bool) {
	if len(raw) > maxSentence {
		return nil, false
	}
	if raw[0].low == "if" || raw[0].low == "when" {
		raw = raw[1:]
	}
	if len(raw) == 0 {
		return nil, false
	}
	type res struct {
		ss []stmt
		ok bool
	}
	memo := map[[2]int]res{}
	var rangeParse func(a, b int) ([]stmt, bool)
	rangeParse = func(a, b int) ([]stmt, bool) {
		key := [2]int{a, b}
		if r, ok := memo[key]; ok {
			return r.ss, r.ok
		}
		memo[key] = res{} // guards against re-entry
		if s, ok := matchClause(raw[a:b]); ok {
			memo[key] = res{[]stmt{s}, true}
			return []stmt{s}, true
		}
		for i := a + 1; i < b-1; i++ {
			if raw[i].kind != tComma && raw[i].low != "and" {
				continue
			}
			j := i + 1
			if raw[i].kind == tComma && raw[j].low == "and" {
				j++
			}
			if j >= b {
				continue
			}
			left, ok := rangeParse(a, i)
			if !ok || left[len(left)-1].kind.question() {
				continue
			}
			right, ok := rangeParse(j, b)
			if !ok {
				// "Amy works 3 hours on Monday and 5 hours on Tuesday": the
				// right clause borrows the left's words before its first number.
				right, ok = elided(raw[a:i], raw[j:b])
				if !ok {
					continue
				}
			}
			ss := append(append([]stmt(nil), left...), right...)
			memo[key] = res{ss, true}
			return ss, true
		}
		return nil, false
	}
	return rangeParse(0, len(raw))
}

func elided(left, right []token) ([]stmt, bool) {
	if right[0].kind != tNum {
		return nil, false
	}
	for k, t := range left {
		if t.kind == tNum {
			if k == 0 {
				return nil, false
			}
			s, ok := matchClause(append(append([]token(nil), left[:k]...), right...))
			if !ok || s.kind.question() {
				return nil, false
			}
			return []stmt{s}, true
		}
	}
	return nil, false
}

func matchClause(raw []token) (stmt, bool) {
	all := matchAll(raw, 1)
	if len(all) == 0 {
		return stmt{}, false
	}
	return all[0], true
}

// matchAll returns up to max readings of a clause, one per matching pattern
// kind: "How many toys does the factory make?" could ask about packing or
// about work done, and only the story can tell.
func matchAll(raw []token, max int) []stmt {
	toks := normalize(raw)
	if len(toks) == 0 {
		return nil
	}
	var out []stmt
	var seen [numKinds]bool
	for _, p := range patterns {
		if f := p.toks[0]; f.slot == "" && f.lit != toks[0].low || seen[p.kind] {
			continue
		}
		if s, ok := match(p, toks); ok {
			out = append(out, s)
			seen[p.kind] = true
			if len(out) == max {
				break
			}
		}
	}
	return out
}
