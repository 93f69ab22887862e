package mathans

import (
	"math/big"
	"strings"
)

type eop uint8

const (
	eNum  eop = iota // r
	eSym             // name
	ePi              //
	eInf             //
	eAdd             // a + b
	eSub             // a - b
	eMul             // a * b
	eDiv             // a / b
	ePow             // a ^ b
	eNeg             // -a
	ePM              // a ± b (a nil: ±b)
	eMP              // a ∓ b
	eFunc            // name(a); b: log base
	eSqrt            // sqrt(a); b: index
	eFact            // a!
	eAbs             // |a|
	ePct             // a%
)

// expr is a scalar expression.
type expr struct {
	op   eop
	a, b *expr
	r    *big.Rat
	dec  bool   // eNum written with a decimal point (Math-Verify rounds these)
	lit  bool   // eNum / eDiv of literals straight from the text (mixed numbers)
	name string // eSym, eFunc
}

type nkind uint8

const (
	nExpr nkind = iota
	nTuple
	nSet
	nInterval
	nUnion
	nRel
	nMatrix
	nText
)

// node is the parse of an answer: a scalar, or a structure of scalars.
type node struct {
	k           nkind
	e           *expr
	elems       []*node // tuple, set, union, matrix (row-major), rel parts, interval [lo, hi]
	open, close byte    // tuple/interval brackets
	ops         []string
	rows, cols  int
	text        string
}

type parser struct {
	toks  []token
	pos   int
	depth int
	err   bool
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.k == tOp && t.text == s
}

func (p *parser) fail() *node { p.err = true; return nil }

func (p *parser) enter() bool {
	p.depth++
	if p.depth > maxDepth {
		p.err = true
		return false
	}
	return true
}

func (p *parser) leave() { p.depth-- }

// parseAnswer parses a whole normalised answer string into a node.
func parseAnswer(s string) *node {
	toks, ok := tokenize(s)
	if !ok || len(toks) == 0 {
		return nil
	}
	// An aligned chain `&=` is written with ampersands outside matrices.
	if !hasMatrix(toks) {
		out := toks[:0:0]
		for _, t := range toks {
			if t.k != tAmp {
				out = append(out, t)
			}
		}
		toks = out
	}
	p := &parser{toks: toks}
	groups := p.parseSeq(func(t token) bool { return t.k == tEOF })
	if p.err || p.pos != len(p.toks) || len(groups) == 0 {
		return nil
	}
	return p.finishSeq(groups, true)
}

func hasMatrix(toks []token) bool {
	for _, t := range toks {
		if t.k == tBegin {
			return true
		}
	}
	return false
}

// finishSeq turns separator-split groups into one node. At top level `;`
// separates alternatives, and a `;`-group of several items is a tuple
// (`p=5,q=2;p=7,q=2`). Several items form an unordered set (a list of
// answers), one item is itself.
func (p *parser) finishSeq(groups [][]*node, top bool) *node {
	var items []*node
	multi := false
	for _, g := range groups {
		if len(g) > 1 {
			multi = true
		}
	}
	if top && len(groups) > 1 && multi {
		for _, g := range groups {
			if len(g) == 1 {
				items = append(items, g[0])
			} else {
				items = append(items, &node{k: nTuple, elems: g, open: '(', close: ')'})
			}
		}
	} else {
		for _, g := range groups {
			items = append(items, g...)
		}
	}
	if len(items) == 1 {
		return items[0]
	}
	return &node{k: nSet, elems: items}
}

// parseSeq parses items separated by , ; and or until stop; it returns the
// items grouped by ';'.
func (p *parser) parseSeq(stop func(token) bool) [][]*node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	groups := [][]*node{nil}
	for !p.err {
		t := p.peek()
		if stop(t) {
			break
		}
		if t.k == tSep {
			p.next()
			if t.text == ";" {
				groups = append(groups, nil)
			}
			continue
		}
		if t.k == tEOF {
			p.err = true
			break
		}
		it := p.parseItem()
		if p.err {
			return nil
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], it)
		u := p.peek()
		if !stop(u) && u.k != tSep {
			p.err = true
		}
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}

// parseItem parses a relation chain `a = b = c`, `0 < x < 1`, `x \in S`.
func (p *parser) parseItem() *node {
	first := p.parseUnion()
	if p.err {
		return nil
	}
	if p.peek().k != tRel {
		return first
	}
	r := &node{k: nRel, elems: []*node{first}}
	for p.peek().k == tRel && !p.err {
		r.ops = append(r.ops, p.next().text)
		r.elems = append(r.elems, p.parseUnion())
		if len(r.ops) > 16 {
			return p.fail()
		}
	}
	if p.err {
		return nil
	}
	return r
}

func (p *parser) parseUnion() *node {
	a := p.parseSum()
	if p.err {
		return nil
	}
	if t := p.peek(); !(t.k == tCmd && t.text == "cup") {
		return a
	}
	u := &node{k: nUnion, elems: []*node{a}}
	for t := p.peek(); t.k == tCmd && t.text == "cup" && !p.err; t = p.peek() {
		p.next()
		u.elems = append(u.elems, p.parseSum())
	}
	if p.err {
		return nil
	}
	return u
}

func scalar(n *node) *expr {
	if n != nil && n.k == nExpr {
		return n.e
	}
	return nil
}

func mk(op eop, a, b *expr) *node { return &node{k: nExpr, e: &expr{op: op, a: a, b: b}} }

func (p *parser) parseSum() *node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	left := p.parseTerm()
	for !p.err {
		t := p.peek()
		var op eop
		switch {
		case t.k == tOp && t.text == "+":
			op = eAdd
		case t.k == tOp && t.text == "-":
			op = eSub
		case t.k == tCmd && t.text == "pm":
			op = ePM
		case t.k == tCmd && t.text == "mp":
			op = eMP
		default:
			return left
		}
		p.next()
		right := p.parseTerm()
		a, b := scalar(left), scalar(right)
		if p.err || a == nil || b == nil {
			return p.fail()
		}
		left = mk(op, a, b)
	}
	return nil
}

// startsAtom reports whether t can begin an implicitly multiplied factor.
func startsAtom(t token) bool {
	switch t.k {
	case tNum, tSym, tBegin:
		return true
	case tCmd:
		switch t.text {
		case "cdot", "times", "div", "ast", "pm", "mp", "cup":
			return false
		}
		return true
	case tOp:
		return t.text == "(" || t.text == "{"
	}
	return false
}

func (p *parser) parseTerm() *node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	left := p.parseUnary()
	count := 1
	for !p.err {
		t := p.peek()
		var op eop
		switch {
		case t.k == tOp && (t.text == "*" || t.text == "/" || t.text == ":"):
			op = eMul
			if t.text != "*" {
				op = eDiv
			}
			p.next()
		case t.k == tCmd && (t.text == "cdot" || t.text == "times" || t.text == "ast" || t.text == "div"):
			op = eMul
			if t.text == "div" {
				op = eDiv
			}
			p.next()
		case t.k == tText:
			// A word after a value is a unit (`5\text{ cm}^2`): drop it.
			if left == nil || left.k != nExpr {
				return left
			}
			p.next()
			if p.isOp("^") {
				p.next()
				p.parseArg()
			}
			continue
		case startsAtom(t):
			op = eMul
		default:
			return left
		}
		right := p.parseUnary()
		a, b := scalar(left), scalar(right)
		if p.err || a == nil || b == nil {
			return p.fail()
		}
		// Mixed number `3\frac{2}{3}`: an integer literal directly followed by
		// a fraction of integer literals means their sum.
		if op == eMul && count == 1 && a.op == eNum && a.lit && !a.dec && b.op == eDiv && b.lit && t.k == tCmd {
			left = mk(eAdd, a, b)
		} else {
			left = mk(op, a, b)
		}
		count++
	}
	return nil
}

func (p *parser) parseUnary() *node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	t := p.peek()
	switch {
	case t.k == tOp && t.text == "-":
		p.next()
		x := p.parseUnary()
		if p.err {
			return nil
		}
		if x != nil && x.k == nExpr {
			return mk(eNeg, x.e, nil)
		}
		return p.fail()
	case t.k == tOp && t.text == "+":
		p.next()
		return p.parseUnary()
	case t.k == tCmd && (t.text == "pm" || t.text == "mp"):
		p.next()
		x := scalar(p.parseUnary())
		if p.err || x == nil {
			return p.fail()
		}
		return mk(ePM, nil, x)
	}
	return p.parsePower()
}

func (p *parser) parsePower() *node {
	base := p.parsePostfix(p.parsePrimary())
	if p.err {
		return nil
	}
	if !p.isOp("^") {
		return base
	}
	p.next()
	var ex *node
	if p.isOp("-") {
		p.next()
		x := scalar(p.parseArg())
		if x == nil {
			return p.fail()
		}
		ex = mk(eNeg, x, nil)
	} else {
		ex = p.parseArg()
	}
	a, b := scalar(base), scalar(ex)
	if p.err || a == nil || b == nil {
		return p.fail()
	}
	return p.parsePostfix(mk(ePow, a, b))
}

func (p *parser) parsePostfix(n *node) *node {
	for !p.err && n != nil {
		switch {
		case p.isOp("!"):
			p.next()
			if n.k != nExpr {
				return p.fail()
			}
			n = mk(eFact, n.e, nil)
		case p.isOp("%"):
			p.next()
			if n.k != nExpr {
				return p.fail()
			}
			n = mk(ePct, n.e, nil)
		case p.isOp("'"):
			p.next()
			if n.k != nExpr || n.e.op != eSym {
				return p.fail()
			}
			n = &node{k: nExpr, e: &expr{op: eSym, name: n.e.name + "'"}}
		default:
			return n
		}
	}
	return n
}

// parseArg parses a macro argument: a braced group, or a single token where
// a multi-digit number contributes only its first digit (`\frac12`, `x^23`).
func (p *parser) parseArg() *node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	t := p.peek()
	if t.k == tOp && t.text == "{" {
		p.next()
		n := p.parseSum()
		if p.err || !p.isOp("}") {
			return p.fail()
		}
		p.next()
		return n
	}
	if t.k == tNum && len(t.text) > 1 && isDigit(t.text[0]) {
		p.toks[p.pos].text = t.text[1:]
		return numNode(t.text[:1])
	}
	if t.k == tNum || t.k == tSym || t.k == tCmd && (t.text == "pi" || t.text == "infty") {
		return p.parsePrimary()
	}
	return p.fail()
}

func numNode(s string) *node {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil
	}
	return &node{k: nExpr, e: &expr{op: eNum, r: r, dec: strings.Contains(s, "."), lit: true}}
}

func (p *parser) parsePrimary() *node {
	if !p.enter() {
		return nil
	}
	defer p.leave()
	t := p.next()
	switch t.k {
	case tNum:
		n := numNode(t.text)
		if n == nil {
			return p.fail()
		}
		if p.isOp("_") {
			// A number with a base subscript (`204_5`) is compared as written.
			p.next()
			sub := p.rawArg()
			if p.err {
				return nil
			}
			return &node{k: nText, text: t.text + "_" + sub}
		}
		return n
	case tSym:
		name := t.text
		if p.isOp("_") {
			p.next()
			name += "_" + p.rawArg()
		}
		if p.err {
			return nil
		}
		return &node{k: nExpr, e: &expr{op: eSym, name: name}}
	case tText:
		return &node{k: nText, text: t.text}
	case tCmd:
		return p.parseCmd(t.text)
	case tLSet:
		g := p.parseSeq(func(t token) bool { return t.k == tRSet || t.k == tEOF })
		if p.err || p.next().k != tRSet {
			return p.fail()
		}
		var items []*node
		for _, x := range g {
			items = append(items, x...)
		}
		return &node{k: nSet, elems: items}
	case tBegin:
		return p.parseMatrix(t.text)
	case tOp:
		switch t.text {
		case "(", "[":
			g := p.parseSeq(func(t token) bool { return t.k == tOp && (t.text == ")" || t.text == "]") || t.k == tEOF })
			cl := p.next()
			if p.err || cl.k != tOp {
				return p.fail()
			}
			var items []*node
			for _, x := range g {
				items = append(items, x...)
			}
			open, close := t.text[0], cl.text[0]
			switch {
			case len(items) == 0:
				return p.fail()
			case len(items) == 1 && (open == '(') == (close == ')'):
				return items[0]
			case len(items) == 2 && (open == '[' || close == ']'):
				return &node{k: nInterval, elems: items, open: open, close: close}
			case open != '(' || close != ')':
				return p.fail()
			}
			return &node{k: nTuple, elems: items, open: open, close: close}
		case "{":
			g := p.parseSeq(func(t token) bool { return t.k == tOp && t.text == "}" || t.k == tEOF })
			if p.err || !p.isOp("}") {
				return p.fail()
			}
			p.next()
			return p.finishSeq(g, false)
		case "|":
			x := p.parseSum()
			if p.err || !p.isOp("|") || scalar(x) == nil {
				return p.fail()
			}
			p.next()
			return mk(eAbs, x.e, nil)
		}
	}
	return p.fail()
}

// rawArg reads a subscript: a braced group or one token, as text.
func (p *parser) rawArg() string {
	t := p.next()
	if t.k == tOp && t.text == "{" {
		var b strings.Builder
		for {
			u := p.next()
			if u.k == tEOF {
				p.err = true
				return ""
			}
			if u.k == tOp && u.text == "}" {
				break
			}
			b.WriteString(u.text)
		}
		return b.String()
	}
	if t.k == tNum || t.k == tSym {
		if t.k == tNum && len(t.text) > 1 {
			p.pos--
			p.toks[p.pos].text = t.text[1:]
			return t.text[:1]
		}
		return t.text
	}
	p.err = true
	return ""
}

func (p *parser) parseCmd(name string) *node {
	switch name {
	case "pi":
		return &node{k: nExpr, e: &expr{op: ePi}}
	case "infty", "infin":
		return &node{k: nExpr, e: &expr{op: eInf}}
	case "emptyset", "varnothing":
		return &node{k: nSet}
	case "mathbb":
		a := p.rawArg()
		if a == "R" {
			inf := &expr{op: eInf}
			return &node{k: nInterval, open: '(', close: ')', elems: []*node{{k: nExpr, e: &expr{op: eNeg, a: inf}}, {k: nExpr, e: inf}}}
		}
		return &node{k: nExpr, e: &expr{op: eSym, name: `\mathbb` + a}}
	case "frac", "binom":
		a := scalar(p.parseArg())
		b := scalar(p.parseArg())
		if p.err || a == nil || b == nil {
			return p.fail()
		}
		if name == "binom" {
			return mk(eFunc, a, b).withName("binom")
		}
		n := mk(eDiv, a, b)
		n.e.lit = a.op == eNum && b.op == eNum && !a.dec && !b.dec
		return n
	case "sqrt":
		var idx *expr
		if p.isOp("[") {
			p.next()
			i := p.parseSum()
			if p.err || !p.isOp("]") || scalar(i) == nil {
				return p.fail()
			}
			p.next()
			idx = i.e
		}
		a := scalar(p.parseArg())
		if p.err || a == nil {
			return p.fail()
		}
		return mk(eSqrt, a, idx)
	}
	if funcNames[name] {
		var pow, base *expr
		for i := 0; i < 2; i++ {
			if p.isOp("^") {
				p.next()
				if p.isOp("-") {
					p.next()
					x := scalar(p.parseArg())
					if x == nil {
						return p.fail()
					}
					pow = &expr{op: eNeg, a: x}
				} else {
					pow = scalar(p.parseArg())
				}
			} else if p.isOp("_") && name == "log" {
				p.next()
				base = scalar(p.parseArg())
			}
		}
		if p.err {
			return nil
		}
		var arg *node
		if p.isOp("(") || p.isOp("{") {
			arg = p.parsePrimary()
		} else {
			arg = p.parsePower()
		}
		a := scalar(arg)
		if p.err || a == nil {
			return p.fail()
		}
		f := &expr{op: eFunc, a: a, b: base, name: name}
		if pow != nil {
			if pow.op == eNeg && pow.a.op == eNum && pow.a.r.Cmp(big.NewRat(1, 1)) == 0 {
				return p.fail() // \sin^{-1}: an inverse, not a power
			}
			f = &expr{op: ePow, a: f, b: pow}
		}
		return &node{k: nExpr, e: f}
	}
	return p.fail()
}

func (n *node) withName(s string) *node { n.e.name = s; return n }

// parseMatrix parses pmatrix/bmatrix/array bodies into a matrix node.
func (p *parser) parseMatrix(env string) *node {
	switch env {
	case "pmatrix", "bmatrix", "matrix", "array", "Bmatrix", "smallmatrix":
	default:
		return p.fail()
	}
	var rows [][]*node
	row := []*node{}
	for !p.err {
		t := p.peek()
		switch t.k {
		case tEnd:
			p.next()
			if len(row) > 0 {
				rows = append(rows, row)
			}
			if len(rows) == 0 {
				return p.fail()
			}
			m := &node{k: nMatrix, rows: len(rows), cols: len(rows[0])}
			for _, r := range rows {
				if len(r) != m.cols {
					return p.fail()
				}
				m.elems = append(m.elems, r...)
			}
			return m
		case tAmp:
			p.next()
			if len(row) == 0 {
				return p.fail()
			}
		case tRow:
			p.next()
			if len(row) > 0 {
				rows = append(rows, row)
			}
			row = []*node{}
		case tEOF:
			return p.fail()
		default:
			x := p.parseSum()
			if p.err || scalar(x) == nil {
				return p.fail()
			}
			row = append(row, x)
		}
	}
	return nil
}
