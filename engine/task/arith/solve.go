package arith

import "math/big"

// Solve is the world's checker: it parses a problem written in the world's
// language and computes its answer, or reports ok=false when the text is not
// a well-posed problem of this world (unknown sentence shapes, a quantity that
// is never given, a share that does not come out even, a negative count).
//
// It is independent of the generator's own arithmetic: the generator computes
// answers while it builds a problem; Solve recomputes them from the text.
func Solve(text string) (answer string, ok bool) {
	ss, alts, ok := parseProblem(text)
	if !ok {
		return "", false
	}
	v, ok := evaluate(ss)
	// Another reading of the question may be the one the story supports;
	// two readings that both work must agree, or the question is ambiguous.
	for _, q := range alts {
		ss[len(ss)-1] = q
		if w, ok2 := evaluate(ss); ok2 {
			if ok && w.Cmp(v) != 0 {
				return "", false
			}
			v, ok = w, true
		}
	}
	if !ok {
		return "", false
	}
	return formatRat(v), true
}

// limit bounds every quantity; beyond it a problem is not of this world.
const limit = 1_000_000_000

func formatRat(v *big.Rat) string {
	if v.IsInt() {
		return v.Num().String()
	}
	n := new(big.Int).Abs(v.Num())
	s := `\frac{` + n.String() + `}{` + v.Denom().String() + `}`
	if v.Sign() < 0 {
		s = "-" + s
	}
	return s
}

type qkey struct{ owner, noun string }
type akey struct{ owner, verb, noun string }

type rate struct {
	n    int64
	unit string // the time unit
}

type split struct {
	owner, group, cont string
	each, rem          int64
	pack               bool
}

type world struct {
	direct  map[qkey]int64
	defined map[qkey]bool
	act     map[akey]int64
	per     map[string]map[string]int64 // container -> noun -> count
	price   map[string]int64
	rates   map[akey]rate
	splits  map[string]split // by noun: the last share or pack
	owners  []string         // in order of first mention
	unknown map[string]bool  // owners whose spending cannot be priced
	lastAg  string
}

func newWorld() *world {
	return &world{
		direct: map[qkey]int64{}, defined: map[qkey]bool{}, act: map[akey]int64{},
		per: map[string]map[string]int64{}, price: map[string]int64{}, rates: map[akey]rate{},
		splits: map[string]split{}, unknown: map[string]bool{},
	}
}

// resolve turns "it" into the last agent mentioned and records owners.
func (w *world) resolve(o owner) (string, bool) {
	if o.key == "" {
		return "", true
	}
	if o.key == "it" {
		return w.lastAg, w.lastAg != ""
	}
	if o.agent {
		w.lastAg = o.key
	}
	for _, k := range w.owners {
		if k == o.key {
			return o.key, true
		}
	}
	w.owners = append(w.owners, o.key)
	return o.key, true
}

// contains is how many of noun one container holds, through nesting.
func (w *world) contains(c, noun string, depth int) (int64, bool) {
	if depth > 4 {
		return 0, false
	}
	var total int64
	for inner, n := range w.per[c] {
		if inner == noun {
			total += n
			continue
		}
		m, ok := w.contains(inner, noun, depth+1)
		if !ok {
			return 0, false
		}
		total += n * m
		if total > limit {
			return 0, false
		}
	}
	return total, true
}

// value is what owner o has of noun: loose ones plus those inside containers.
func (w *world) value(o, noun string) (int64, bool, bool) {
	k := qkey{o, noun}
	v, def := w.direct[k], w.defined[k]
	for c := range w.per {
		if c == noun {
			continue
		}
		ck := qkey{o, c}
		if !w.defined[ck] {
			continue
		}
		m, ok := w.contains(c, noun, 0)
		if !ok {
			return 0, false, false
		}
		if m > 0 {
			v += w.direct[ck] * m
			def = true
		}
	}
	if v < 0 || v > limit {
		return 0, false, false
	}
	return v, def, true
}

// setTotal makes owner o hold exactly v of noun (containers included).
func (w *world) setTotal(o, noun string, v int64) bool {
	cur, def, ok := w.value(o, noun)
	if !ok || v < 0 || v > limit {
		return false
	}
	if !def {
		cur = 0
	}
	k := qkey{o, noun}
	w.direct[k] += v - cur
	w.defined[k] = true
	return true
}

func (w *world) add(o, noun string, n int64) bool {
	cur, _, ok := w.value(o, noun)
	return ok && w.setTotal(o, noun, cur+n)
}

func (w *world) sub(o, noun string, n int64) bool {
	cur, def, ok := w.value(o, noun)
	return ok && def && cur >= n && w.setTotal(o, noun, cur-n)
}

func (w *world) record(o, verb, noun string, n int64) bool {
	k := akey{o, verb, noun}
	w.act[k] += n
	return w.act[k] <= limit
}

// money moves dollars for a purchase (sign -1) or a sale (+1): the spending or
// earning is recorded, and the owner's dollars change if they were given.
func (w *world) money(o string, amount int64, sign int) bool {
	verb := "spend"
	if sign > 0 {
		verb = "earn"
	}
	if !w.record(o, verb, "dollar", amount) {
		return false
	}
	if _, def, _ := w.value(o, "dollar"); !def {
		return true
	}
	if sign > 0 {
		return w.add(o, "dollar", amount)
	}
	return w.sub(o, "dollar", amount)
}

func mulFrac(f frac, v int64) (int64, bool) {
	if f.den == 0 || v*f.num%f.den != 0 {
		return 0, false
	}
	return v * f.num / f.den, true
}

// evaluate runs the statements: static facts (contents, prices, rates) first,
// since a problem may state them after they are used, then the events in
// order, then the question.
func evaluate(ss []stmt) (*big.Rat, bool) {
	w := newWorld()
	for i := range ss {
		s := &ss[i]
		switch s.kind {
		case kPer, kGroups:
			if s.N <= 0 || s.C == s.O {
				return nil, false
			}
			if w.per[s.C] == nil {
				w.per[s.C] = map[string]int64{}
			}
			if old, ok := w.per[s.C][s.O]; ok && old != s.N {
				return nil, false // contradictory
			}
			w.per[s.C][s.O] = s.N
		case kPrice, kBuyAt, kSellAt:
			if old, ok := w.price[s.O]; ok && old != s.N {
				return nil, false
			}
			w.price[s.O] = s.N
		}
	}
	// Rates need owners resolved in order ("it"), so walk once for them.
	tmp := &world{lastAg: ""}
	for i := range ss {
		s := &ss[i]
		p, ok := tmp.resolve(s.P)
		if !ok {
			return nil, false
		}
		if s.kind == kRate || s.kind == kRateDur {
			k := akey{p, s.V, s.U}
			if old, ok := w.rates[k]; ok && old != (rate{s.N, s.R}) {
				return nil, false
			}
			if s.N <= 0 {
				return nil, false
			}
			w.rates[k] = rate{s.N, s.R}
		}
	}
	last := len(ss) - 1
	for i := range ss[:last] {
		if !w.event(&ss[i]) {
			return nil, false
		}
	}
	v, ok := w.answer(&ss[last])
	if !ok || v.Sign() < 0 && ss[last].kind != qExpr {
		return nil, false
	}
	return v, true
}

func (w *world) event(s *stmt) bool {
	p, ok1 := w.resolve(s.P)
	q, ok2 := w.resolve(s.Q)
	if !ok1 || !ok2 || p != "" && p == q {
		return false
	}
	switch s.kind {
	case kSet:
		return w.setTotal(p, s.O, s.N)
	case kAdd:
		if !w.add(p, s.O, s.N) || !w.record(p, s.V, s.O, s.N) {
			return false
		}
		if s.V == "buy" {
			if pr, ok := w.price[s.O]; ok {
				return w.money(p, pr*s.N, -1)
			}
			w.unknown[p] = true
		}
		if s.V == "earn" && s.O == "dollar" {
			return w.record(p, "earn", "dollar", 0)
		}
		return true
	case kSub:
		if !w.sub(p, s.O, s.N) || !w.record(p, s.V, s.O, s.N) {
			return false
		}
		if s.V == "sell" {
			if pr, ok := w.price[s.O]; ok {
				return w.money(p, pr*s.N, +1)
			}
		}
		return true
	case kGive:
		return w.sub(p, s.O, s.N) && w.add(q, s.O, s.N) && w.record(p, "give", s.O, s.N)
	case kTimes, kMore, kFewer:
		v, def, ok := w.value(p, s.O)
		if !ok || !def {
			return false
		}
		switch s.kind {
		case kTimes:
			if v, ok = mulFrac(s.X, v); !ok {
				return false
			}
		case kMore:
			v += s.N
		default:
			v -= s.N
		}
		return w.setTotal(q, s.O, v)
	case kGroups, kHasC:
		if s.K <= 0 {
			return false
		}
		k := qkey{p, s.C}
		if s.kind == kHasC {
			// the contents come from a "Each box holds ..." sentence
			if _, ok := w.per[s.C][s.O]; !ok {
				return false
			}
		}
		if s.V == "buy" {
			return w.add(p, s.C, s.K)
		}
		w.direct[k] = s.K
		w.defined[k] = true
		return true
	case kPer, kPrice, kRate:
		return true
	case kShare, kPack:
		v, def, ok := w.value(p, s.O)
		n := s.K
		if s.kind == kPack {
			n = s.N
		}
		if !ok || !def || n <= 0 {
			return false
		}
		sp := split{owner: p, group: s.G, cont: s.C, each: v / n, rem: v % n, pack: s.kind == kPack}
		w.splits[s.O] = sp
		if !w.setTotal(p, s.O, sp.rem) {
			return false
		}
		if sp.pack {
			return w.add(p, s.C, sp.each)
		}
		return true
	case kFrac, kFracGive:
		v, def, ok := w.value(p, s.O)
		if !ok || !def {
			return false
		}
		n, ok := mulFrac(s.F, v)
		if !ok || !w.sub(p, s.O, n) {
			return false
		}
		if s.kind == kFracGive {
			return w.add(q, s.O, n)
		}
		return w.record(p, s.V, s.O, n)
	case kBuyAt:
		if !w.add(p, s.O, s.K) || !w.record(p, "buy", s.O, s.K) {
			return false
		}
		return w.money(p, s.K*s.N, -1)
	case kSellAt:
		if !w.sub(p, s.O, s.K) || !w.record(p, "sell", s.O, s.K) {
			return false
		}
		return w.money(p, s.K*s.N, +1)
	case kRateDur, kDur:
		if s.K <= 0 {
			return false
		}
		any := false
		for k, r := range w.rates {
			if k.owner != p {
				continue
			}
			// Only whole units of the rate's time: 90 minutes at a rate per
			// hour is not this world's arithmetic.
			m := minutesIn[s.T] * s.K
			if m%minutesIn[r.unit] != 0 {
				return false
			}
			if s.kind == kRateDur && (k.verb != s.V || k.noun != s.U) {
				continue
			}
			n := r.n * (m / minutesIn[r.unit])
			if !w.record(p, k.verb, k.noun, n) {
				return false
			}
			// Wages go into the owner's dollars when those were given.
			if _, def, _ := w.value(p, "dollar"); def && k.verb == "earn" && k.noun == "dollar" && !w.add(p, "dollar", n) {
				return false
			}
			any = true
		}
		return any
	}
	return false
}

func ratInt(v int64) *big.Rat { return new(big.Rat).SetInt64(v) }

func (w *world) answer(s *stmt) (*big.Rat, bool) {
	p, ok1 := w.resolve(s.P)
	q, ok2 := w.resolve(s.Q)
	if !ok1 || !ok2 {
		return nil, false
	}
	switch s.kind {
	case qHave:
		v, def, ok := w.value(p, s.O)
		return ratInt(v), ok && def
	case qSum:
		var keys []string
		if s.they {
			for _, o := range w.owners {
				if _, def, _ := w.value(o, s.O); def {
					keys = append(keys, o)
				}
			}
		} else {
			for _, o := range s.L {
				k, _ := w.resolve(o)
				keys = append(keys, k)
			}
		}
		return w.sum(keys, s.O, 2)
	case qAll:
		return w.sum(w.owners, s.O, 1)
	case qDiff:
		a, defA, okA := w.value(p, s.O)
		b, defB, okB := w.value(q, s.O)
		if !okA || !okB || !defA || !defB || a < b || p == q {
			return nil, false
		}
		return ratInt(a - b), true
	case qEach:
		sp, ok := w.splits[s.O]
		if !ok || sp.pack || sp.group != s.G || sp.rem != 0 {
			return nil, false
		}
		return ratInt(sp.each), true
	case qRem:
		sp, ok := w.splits[s.O]
		if !ok {
			// "How many apples are left?" with no sharing: the one holder's count.
			if p != "" {
				return nil, false
			}
			return w.sum(w.owners, s.O, 1)
		}
		if p != "" && p != sp.owner {
			return nil, false
		}
		return ratInt(sp.rem), true
	case qFill:
		for _, sp := range w.splits {
			if sp.pack && sp.cont == s.C && (p == "" || p == sp.owner) {
				return ratInt(sp.each), true
			}
		}
		return nil, false
	case qAct:
		v, ok := w.act[akey{p, s.V, s.U}]
		if !ok || s.V == "spend" && w.unknown[p] {
			return nil, false
		}
		return ratInt(v), true
	case qSpend, qEarn:
		verb := "spend"
		if s.kind == qEarn {
			verb = "earn"
		}
		v, ok := w.act[akey{p, verb, "dollar"}]
		if !ok || verb == "spend" && w.unknown[p] {
			return nil, false
		}
		return ratInt(v), true
	case qCost:
		var total int64
		found := false
		for k, v := range w.act {
			if k.verb == "spend" && k.noun == "dollar" {
				if w.unknown[k.owner] {
					return nil, false
				}
				total += v
				found = true
			}
		}
		return ratInt(total), found
	case qActIn:
		r, ok := w.rates[akey{p, s.V, s.U}]
		if !ok || s.K <= 0 {
			return nil, false
		}
		m := minutesIn[s.T] * s.K
		if m%minutesIn[r.unit] != 0 {
			return nil, false
		}
		return ratInt(r.n * (m / minutesIn[r.unit])), true
	case qTake:
		r, ok := w.rates[akey{p, s.V, s.U}]
		if !ok || s.N <= 0 {
			return nil, false
		}
		// time = N / rate, in the rate's unit, then in the asked unit.
		t := new(big.Rat).SetFrac64(s.N*minutesIn[r.unit], r.n*minutesIn[s.T])
		return t, t.IsInt()
	case qExpr:
		return s.ev, s.ev != nil
	case qFracOf:
		v, ok := mulFrac(s.F, s.N)
		if !ok {
			return new(big.Rat).SetFrac64(s.F.num*s.N, s.F.den), s.F.den > 0
		}
		return ratInt(v), true
	}
	return nil, false
}

// sum adds the holdings of several owners; every one must hold some.
func (w *world) sum(keys []string, noun string, min int) (*big.Rat, bool) {
	var total int64
	n := 0
	for _, k := range keys {
		v, def, ok := w.value(k, noun)
		if !ok {
			return nil, false
		}
		if !def {
			if min == 2 {
				return nil, false // a named person who has none of it
			}
			continue
		}
		total += v
		n++
	}
	return ratInt(total), n >= min
}
