package mathans

import (
	"hash/fnv"
	"math"
	"math/big"
	"strings"
)

// nPoints is how many fixed pseudo-random points an expression with free
// variables is evaluated at; two expressions agreeing at all of them are
// taken as identical (a polynomial identity test).
const nPoints = 6

// Bounds for exact arithmetic: beyond them a value is evaluated in floating
// point only (or refused), so `10^{100000}` cannot stall a grader.
const (
	maxRatBits = 4096
	maxExpAbs  = 10000
	maxVariant = 4
)

type vkind uint8

const (
	vScalar vkind = iota
	vText
	vTuple
	vSet
	vInterval
	vUnion
	vRel
	vMatrix
)

// val is the compiled, comparison-ready form of an answer. Everything Same
// needs is computed once here.
type val struct {
	k      vkind
	rat    *big.Rat // exact value: constant and rational
	approx bool     // a decimal literal is involved: compare rounded to 6 places
	konst  bool     // no free variables
	inf    int8     // +1/-1 for ±∞
	f      [nPoints]float64
	text   string
	elems  []*val
	paren2 bool // (a,b): a pair or an open interval
	loC    bool // interval closed at the low end
	hiC    bool
	op     string // relation: "<", "<=", "=", "!="
	rows   int
	cols   int
}

// compile turns a node into its value variants (several when ± occurs).
func compile(n *node, depth int) []*val {
	if n == nil || depth > maxDepth {
		return nil
	}
	switch n.k {
	case nExpr:
		var out []*val
		for _, e := range expandPM(n.e, 0) {
			if v := compileScalar(e); v != nil {
				out = append(out, v)
			} else {
				return nil
			}
		}
		return out
	case nText:
		return []*val{{k: vText, text: normText(n.text)}}
	case nTuple, nMatrix:
		v := &val{k: vTuple, paren2: len(n.elems) == 2 && n.open == '(', rows: n.rows, cols: n.cols}
		if n.k == nMatrix {
			v.k = vMatrix
		}
		for _, e := range n.elems {
			c := compile(e, depth+1)
			if len(c) != 1 {
				return nil
			}
			v.elems = append(v.elems, c[0])
		}
		return []*val{v}
	case nSet:
		v := &val{k: vSet}
		for _, e := range n.elems {
			c := compile(e, depth+1)
			if c == nil {
				return nil
			}
			for _, x := range c {
				if x.k == vSet {
					v.elems = append(v.elems, x.elems...)
				} else {
					v.elems = append(v.elems, x)
				}
			}
		}
		v.elems = dedupe(v.elems)
		if len(v.elems) == 1 {
			return v.elems
		}
		return []*val{v}
	case nInterval:
		lo, hi := compile(n.elems[0], depth+1), compile(n.elems[1], depth+1)
		if len(lo) != 1 || len(hi) != 1 || lo[0].k != vScalar || hi[0].k != vScalar {
			return nil
		}
		return []*val{{k: vInterval, elems: []*val{lo[0], hi[0]}, loC: n.open == '[', hiC: n.close == ']'}}
	case nUnion:
		v := &val{k: vUnion}
		for _, e := range n.elems {
			c := compile(e, depth+1)
			if len(c) != 1 {
				return nil
			}
			iv := asInterval(c[0])
			if iv == nil {
				return nil
			}
			v.elems = append(v.elems, iv)
		}
		return []*val{v}
	case nRel:
		return compileRel(n, depth)
	}
	return nil
}

func asInterval(v *val) *val {
	switch {
	case v.k == vInterval:
		return v
	case v.k == vTuple && v.paren2 && v.elems[0].k == vScalar && v.elems[1].k == vScalar:
		return &val{k: vInterval, elems: v.elems}
	}
	return nil
}

func dedupe(xs []*val) []*val {
	out := xs[:0:0]
	for _, x := range xs {
		dup := false
		for _, y := range out {
			if eqVal(x, y, 0) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}

// numberFree reports whether a node has no numeric literal (subscripts are
// part of names): such a side of `=` names the answer rather than states it
// (`x = 5`, `f(x) = 1`, `\frac{NO}{BO} = ...`, `(p,q) = (3,2)`).
func numberFree(n *node) bool {
	if n == nil {
		return false
	}
	switch n.k {
	case nText:
		return true
	case nExpr:
		return exprNumberFree(n.e)
	case nTuple:
		for _, e := range n.elems {
			if !numberFree(e) {
				return false
			}
		}
		return true
	}
	return false
}

func exprNumberFree(e *expr) bool {
	if e == nil {
		return true
	}
	switch e.op {
	case eNum, ePi, eInf:
		return false
	case eSym:
		return true
	}
	return exprNumberFree(e.a) && exprNumberFree(e.b)
}

func compileRel(n *node, depth int) []*val {
	parts, ops := n.elems, n.ops
	allEq := true
	for _, o := range ops {
		if o != "=" && o != "~" {
			allEq = false
		}
	}
	if allEq {
		// `x = 1/3 \approx 0.33`: an exact value stated before ≈ wins.
		for i, o := range ops {
			if o == "~" {
				if i > 0 || numberFree(parts[0]) {
					if i > 0 {
						return compile(parts[i], depth+1)
					}
					return compile(parts[1], depth+1)
				}
			}
		}
		for _, q := range parts[:len(parts)-1] {
			if numberFree(q) {
				return compile(parts[len(parts)-1], depth+1)
			}
		}
		if len(parts) > 2 {
			// A computation chain `1+1 = 2`: its result is the answer.
			return compile(parts[len(parts)-1], depth+1)
		}
		return relation("=", parts[0], parts[1])
	}
	if len(ops) == 1 && ops[0] == "in" {
		return compile(parts[1], depth+1)
	}
	if len(ops) == 1 {
		return relation(ops[0], parts[0], parts[1])
	}
	// `a < x < b` / `a \le x < b` is the interval between a and b.
	if len(ops) == 2 && numberFree(parts[1]) {
		lo, hi := parts[0], parts[2]
		o1, o2 := ops[0], ops[1]
		if o1[0] == '>' && o2[0] == '>' {
			lo, hi, o1, o2 = hi, lo, o2, o1
		}
		if o1[0] == '<' && o2[0] == '<' {
			iv := &node{k: nInterval, elems: []*node{lo, hi}, open: '(', close: ')'}
			if o1 == "<=" {
				iv.open = '['
			}
			if o2 == "<=" {
				iv.close = ']'
			}
			return compile(iv, depth+1)
		}
	}
	return nil
}

// relation compiles `lhs op rhs` as `(lhs - rhs) op 0` with op in {<, <=, =, !=}.
func relation(op string, l, r *node) []*val {
	a, b := scalar(l), scalar(r)
	if a == nil || b == nil || hasPM(a) || hasPM(b) {
		return nil
	}
	switch op {
	case ">":
		op, a, b = "<", b, a
	case ">=":
		op, a, b = "<=", b, a
	case "<", "<=", "=", "!=":
	default:
		return nil
	}
	d := compileScalar(&expr{op: eSub, a: a, b: b})
	if d == nil {
		return nil
	}
	v := &val{k: vRel, op: op, elems: []*val{d}}
	if op == "=" || op == "!=" {
		v.elems = append(v.elems, compileScalar(&expr{op: eSub, a: b, b: a}))
		if v.elems[1] == nil {
			return nil
		}
	}
	return []*val{v}
}

func hasPM(e *expr) bool {
	if e == nil {
		return false
	}
	return e.op == ePM || e.op == eMP || hasPM(e.a) || hasPM(e.b)
}

// expandPM returns the variants of e with each ± replaced by + and by −.
func expandPM(e *expr, depth int) []*expr {
	if e == nil || depth > maxDepth {
		return []*expr{e}
	}
	if !hasPM(e) {
		return []*expr{e}
	}
	as, bs := expandPM(e.a, depth+1), expandPM(e.b, depth+1)
	var out []*expr
	for _, a := range as {
		for _, b := range bs {
			switch e.op {
			case ePM, eMP:
				plus, minus := &expr{op: eAdd, a: a, b: b}, &expr{op: eSub, a: a, b: b}
				if a == nil {
					plus, minus = b, &expr{op: eNeg, a: b}
				}
				out = append(out, plus, minus)
			default:
				c := *e
				c.a, c.b = a, b
				out = append(out, &c)
			}
			if len(out) >= maxVariant {
				return out[:maxVariant]
			}
		}
	}
	return out
}

func normText(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(s), " "))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	return strings.TrimSpace(s)
}

func compileScalar(e *expr) *val {
	if e == nil {
		return nil
	}
	if e.op == eInf {
		return &val{k: vScalar, inf: 1, konst: true}
	}
	if e.op == eNeg && e.a != nil && e.a.op == eInf {
		return &val{k: vScalar, inf: -1, konst: true}
	}
	if hasInf(e) {
		return nil
	}
	v := &val{k: vScalar, konst: !hasSym(e)}
	if r, approx, ok := evalRat(e, 0); ok {
		v.rat, v.approx = r, approx
	}
	if v.konst {
		x := 0.0
		if v.rat != nil {
			x, _ = v.rat.Float64()
		} else {
			x = evalF(e, 0, 0)
		}
		if math.IsNaN(x) || (math.IsInf(x, 0) && v.rat == nil) {
			return nil
		}
		for i := range v.f {
			v.f[i] = x
		}
		return v
	}
	good := 0
	for i := range v.f {
		v.f[i] = evalF(e, i, 0)
		if !math.IsNaN(v.f[i]) && !math.IsInf(v.f[i], 0) {
			good++
		}
	}
	if good == 0 {
		return nil
	}
	return v
}

func hasInf(e *expr) bool {
	if e == nil {
		return false
	}
	return e.op == eInf || hasInf(e.a) || hasInf(e.b)
}

func hasSym(e *expr) bool {
	if e == nil {
		return false
	}
	return e.op == eSym || hasSym(e.a) || hasSym(e.b)
}

// evalRat evaluates e exactly when it is a rational constant.
func evalRat(e *expr, depth int) (*big.Rat, bool, bool) {
	if e == nil || depth > maxDepth {
		return nil, false, false
	}
	switch e.op {
	case eNum:
		return e.r, e.dec, true
	case eAdd, eSub, eMul, eDiv:
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok {
			return nil, false, false
		}
		b, bp, ok := evalRat(e.b, depth+1)
		if !ok {
			return nil, false, false
		}
		r := new(big.Rat)
		switch e.op {
		case eAdd:
			r.Add(a, b)
		case eSub:
			r.Sub(a, b)
		case eMul:
			r.Mul(a, b)
		case eDiv:
			if b.Sign() == 0 {
				return nil, false, false
			}
			r.Quo(a, b)
		}
		if r.Num().BitLen()+r.Denom().BitLen() > maxRatBits {
			return nil, false, false
		}
		return r, ap || bp, true
	case eNeg:
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok {
			return nil, false, false
		}
		return new(big.Rat).Neg(a), ap, true
	case ePct:
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok {
			return nil, false, false
		}
		return new(big.Rat).Quo(a, big.NewRat(100, 1)), ap, true
	case ePow:
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok {
			return nil, false, false
		}
		b, bp, ok := evalRat(e.b, depth+1)
		if !ok || !b.IsInt() || bp || b.Num().BitLen() > 20 {
			return nil, false, false
		}
		n := b.Num().Int64()
		if n < -maxExpAbs || n > maxExpAbs {
			return nil, false, false
		}
		neg := n < 0
		if neg {
			n = -n
			if a.Sign() == 0 {
				return nil, false, false
			}
		}
		bits := int64(a.Num().BitLen() + a.Denom().BitLen())
		if bits*n > maxRatBits {
			return nil, false, false
		}
		num := new(big.Int).Exp(a.Num(), big.NewInt(n), nil)
		den := new(big.Int).Exp(a.Denom(), big.NewInt(n), nil)
		r := new(big.Rat).SetFrac(num, den)
		if neg {
			r.Inv(r)
		}
		return r, ap, true
	case eSqrt:
		if e.b != nil {
			return nil, false, false
		}
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok || a.Sign() < 0 {
			return nil, false, false
		}
		n, d := new(big.Int).Sqrt(a.Num()), new(big.Int).Sqrt(a.Denom())
		if new(big.Int).Mul(n, n).Cmp(a.Num()) != 0 || new(big.Int).Mul(d, d).Cmp(a.Denom()) != 0 {
			return nil, false, false
		}
		return new(big.Rat).SetFrac(n, d), ap, true
	case eFact:
		a, _, ok := evalRat(e.a, depth+1)
		if !ok || !a.IsInt() || a.Sign() < 0 || a.Num().BitLen() > 10 || a.Num().Int64() > 300 {
			return nil, false, false
		}
		return new(big.Rat).SetInt(new(big.Int).MulRange(1, a.Num().Int64())), false, true
	case eAbs:
		a, ap, ok := evalRat(e.a, depth+1)
		if !ok {
			return nil, false, false
		}
		return new(big.Rat).Abs(a), ap, true
	case eFunc:
		if e.name != "binom" {
			return nil, false, false
		}
		a, _, ok1 := evalRat(e.a, depth+1)
		b, _, ok2 := evalRat(e.b, depth+1)
		if !ok1 || !ok2 || !a.IsInt() || !b.IsInt() || a.Num().BitLen() > 16 || b.Num().BitLen() > 16 {
			return nil, false, false
		}
		n, k := a.Num().Int64(), b.Num().Int64()
		if k < 0 || n < 0 || k > n {
			return nil, false, false
		}
		return new(big.Rat).SetInt(new(big.Int).Binomial(n, k)), false, true
	}
	return nil, false, false
}

// varValue gives a free variable a fixed pseudo-random value in [0.6, 2.6)
// at point i; positive values keep roots and logarithms real.
func varValue(name string, i int) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := h.Sum64() + uint64(i+1)*0x9E3779B97F4A7C15
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return 0.6 + 2*float64(x>>11)/float64(1<<53)
}

func evalF(e *expr, pt, depth int) float64 {
	if e == nil || depth > maxDepth {
		return math.NaN()
	}
	switch e.op {
	case eNum:
		f, _ := e.r.Float64()
		return f
	case eSym:
		return varValue(e.name, pt)
	case ePi:
		return math.Pi
	case eAdd:
		return evalF(e.a, pt, depth+1) + evalF(e.b, pt, depth+1)
	case eSub:
		return evalF(e.a, pt, depth+1) - evalF(e.b, pt, depth+1)
	case eMul:
		return evalF(e.a, pt, depth+1) * evalF(e.b, pt, depth+1)
	case eDiv:
		d := evalF(e.b, pt, depth+1)
		if d == 0 {
			return math.NaN()
		}
		return evalF(e.a, pt, depth+1) / d
	case eNeg:
		return -evalF(e.a, pt, depth+1)
	case ePct:
		return evalF(e.a, pt, depth+1) / 100
	case ePow:
		return math.Pow(evalF(e.a, pt, depth+1), evalF(e.b, pt, depth+1))
	case eSqrt:
		a := evalF(e.a, pt, depth+1)
		if e.b == nil {
			return math.Sqrt(a)
		}
		n := evalF(e.b, pt, depth+1)
		if a < 0 && n == math.Trunc(n) && math.Mod(n, 2) == 1 {
			return -math.Pow(-a, 1/n)
		}
		return math.Pow(a, 1/n)
	case eAbs:
		return math.Abs(evalF(e.a, pt, depth+1))
	case eFact:
		a := evalF(e.a, pt, depth+1)
		if a < 0 || a != math.Trunc(a) || a > 170 {
			return math.NaN()
		}
		return math.Gamma(a + 1)
	case eFunc:
		a := evalF(e.a, pt, depth+1)
		switch e.name {
		case "sin":
			return math.Sin(a)
		case "cos":
			return math.Cos(a)
		case "tan":
			return math.Tan(a)
		case "sec":
			return 1 / math.Cos(a)
		case "csc":
			return 1 / math.Sin(a)
		case "cot":
			return 1 / math.Tan(a)
		case "arcsin":
			return math.Asin(a)
		case "arccos":
			return math.Acos(a)
		case "arctan":
			return math.Atan(a)
		case "sinh":
			return math.Sinh(a)
		case "cosh":
			return math.Cosh(a)
		case "tanh":
			return math.Tanh(a)
		case "ln":
			return math.Log(a)
		case "exp":
			return math.Exp(a)
		case "log":
			if e.b != nil {
				return math.Log(a) / math.Log(evalF(e.b, pt, depth+1))
			}
			return math.Log(a) // natural log, as sympy reads \log
		case "binom":
			n, k := a, evalF(e.b, pt, depth+1)
			lg1, _ := math.Lgamma(n + 1)
			lg2, _ := math.Lgamma(k + 1)
			lg3, _ := math.Lgamma(n - k + 1)
			return math.Round(math.Exp(lg1 - lg2 - lg3))
		}
	}
	return math.NaN()
}

// closeConst: Math-Verify's float_rounding=6 (equal after rounding to six
// decimals), plus a relative tolerance so float noise on large or tiny
// values cannot split equal closed forms.
func closeConst(a, b float64) bool {
	if a == b {
		return true
	}
	if math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return false
	}
	if math.Abs(a) < 1e9 && math.Abs(b) < 1e9 && math.Round(a*1e6) == math.Round(b*1e6) {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// closeVar compares evaluations of expressions with free variables, where
// rounding would be too loose (x/10^7 vs 0).
func closeVar(a, b float64) bool {
	if a == b {
		return true
	}
	if math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return false
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) || math.Abs(a-b) < 1e-12
}

var million = big.NewInt(1000000)

func round6(r *big.Rat) *big.Int {
	x := new(big.Rat).Mul(r, new(big.Rat).SetInt(million))
	n := new(big.Int).Mul(x.Num(), big.NewInt(2))
	n.Add(n, x.Denom())
	d := new(big.Int).Mul(x.Denom(), big.NewInt(2))
	return n.Div(n, d) // floor(x + 1/2)
}

func eqScalar(a, b *val) bool {
	if a.inf != 0 || b.inf != 0 {
		return a.inf == b.inf
	}
	if a.konst && b.konst {
		if a.rat != nil && b.rat != nil {
			// Equal rationals convert to the same float64, so a float gap
			// decides most pairs without big.Rat work.
			if d := math.Abs(a.f[0] - b.f[0]); d != 0 && (!(a.approx || b.approx) || d > 1e-5*math.Max(1, math.Abs(a.f[0]))) {
				return false
			}
			if a.rat.Cmp(b.rat) == 0 {
				return true
			}
			if a.approx || b.approx {
				return round6(a.rat).Cmp(round6(b.rat)) == 0
			}
			return false
		}
		return closeConst(a.f[0], b.f[0])
	}
	both := 0
	for i := range a.f {
		x, y := a.f[i], b.f[i]
		xn, yn := math.IsNaN(x) || math.IsInf(x, 0), math.IsNaN(y) || math.IsInf(y, 0)
		if xn && yn {
			continue
		}
		if xn != yn || !closeVar(x, y) {
			return false
		}
		both++
	}
	return both > 0
}

func eqVal(a, b *val, depth int) bool {
	if depth > maxDepth {
		return false
	}
	if a.k != b.k {
		// A pair (a,b) also reads as the open interval (a,b).
		if a.k == vTuple && b.k == vInterval {
			a, b = b, a
		}
		if a.k == vInterval && b.k == vTuple && b.paren2 && !a.loC && !a.hiC {
			return eqVal(a.elems[0], b.elems[0], depth+1) && eqVal(a.elems[1], b.elems[1], depth+1)
		}
		if a.k == vUnion && len(a.elems) == 1 {
			return eqVal(a.elems[0], b, depth+1)
		}
		if b.k == vUnion && len(b.elems) == 1 {
			return eqVal(a, b.elems[0], depth+1)
		}
		return false
	}
	switch a.k {
	case vScalar:
		return eqScalar(a, b)
	case vText:
		return a.text == b.text
	case vTuple, vMatrix:
		if len(a.elems) != len(b.elems) || a.rows != b.rows || a.cols != b.cols {
			return false
		}
		for i := range a.elems {
			if !eqVal(a.elems[i], b.elems[i], depth+1) {
				return false
			}
		}
		return true
	case vInterval:
		return a.loC == b.loC && a.hiC == b.hiC && eqVal(a.elems[0], b.elems[0], depth+1) && eqVal(a.elems[1], b.elems[1], depth+1)
	case vSet, vUnion:
		return matchSets(a.elems, b.elems, depth+1)
	case vRel:
		if a.op != b.op {
			return false
		}
		if eqScalar(a.elems[0], b.elems[0]) {
			return true
		}
		// An equation also holds with its sides swapped.
		return len(a.elems) == 2 && eqScalar(a.elems[1], b.elems[0])
	}
	return false
}

// matchSets decides whether two sets have a perfect matching of equal
// elements (exact search for small sets, greedy beyond).
func matchSets(a, b []*val, depth int) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
	if len(a) > 8 {
		for _, x := range a {
			found := false
			for j, y := range b {
				if !used[j] && eqVal(x, y, depth) {
					used[j], found = true, true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	var rec func(i int) bool
	rec = func(i int) bool {
		if i == len(a) {
			return true
		}
		for j, y := range b {
			if !used[j] && eqVal(a[i], y, depth) {
				used[j] = true
				if rec(i + 1) {
					return true
				}
				used[j] = false
			}
		}
		return false
	}
	return rec(0)
}
