package arith

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Problem is one labelled problem, in the JSONL format of SeRL's seed files
// (docs/SERL.md §1.2): level is "Level N" as in MATH.
type Problem struct {
	Problem  string `json:"problem"`
	Answer   string `json:"answer"`
	Solution string `json:"solution"`
	Level    string `json:"level"`
	ID       string `json:"unique_id"`
}

// Levels is the number of difficulty levels.
const Levels = 5

// LevelNum is the level as a number (0 if the field is malformed).
func (p Problem) LevelNum() int {
	n, _ := strconv.Atoi(strings.TrimPrefix(p.Level, "Level "))
	return n
}

// Generate makes one problem of the given level (1..5) from a seed. The same
// (seed, level) always gives the same problem.
func Generate(seed uint64, level int) Problem {
	if level < 1 || level > Levels {
		panic(fmt.Sprintf("arith: level %d out of range", level))
	}
	r := rand.New(rand.NewPCG(seed, uint64(level)*0x9E3779B97F4A7C15))
	g := &gen{r: r, level: level, used: map[string]bool{},
		route: rand.New(rand.NewPCG(seed, uint64(level)*0x9E3779B97F4A7C15^0x5EED)), routed: maxRouted}
	fams := families[level-1]
	f := fams[r.IntN(len(fams))]
	f(g)
	return g.problem(fmt.Sprintf("arith/L%d/%d", level, seed))
}

// gen builds one problem: sentences, the answer it computes itself, and the
// solution steps.
type gen struct {
	r      *rand.Rand
	level  int
	used   map[string]bool
	route  *rand.Rand // the solution's route through each operation (routes.go)
	routed int        // operations left that may leave the straight route
	sents  []string
	steps  []string
	answer string
}

func (g *gen) problem(id string) Problem {
	var sol strings.Builder
	for i, s := range g.steps {
		fmt.Fprintf(&sol, "Step %d: %s\n", i+1, s)
	}
	fmt.Fprintf(&sol, "The answer is \\boxed{%s}.", g.answer)
	return Problem{
		Problem:  strings.Join(g.sents, " "),
		Answer:   g.answer,
		Solution: sol.String(),
		Level:    "Level " + strconv.Itoa(g.level),
		ID:       id,
	}
}

func (g *gen) n(lo, hi int64) int64 { return lo + g.r.Int64N(hi-lo+1) }

func (g *gen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) person() owner {
	for {
		n := g.pick(names)
		if !g.used[n] {
			g.used[n] = true
			return owner{key: strings.ToLower(n), disp: n}
		}
	}
}

func agent(n string) owner { return owner{key: "@" + n, disp: n, agent: true} }

// object picks an unused noun of a category.
func (g *gen) object(cat int) string {
	xs := nounsOf(cat)
	for {
		n := g.pick(xs)
		if !g.used["#"+n] {
			g.used["#"+n] = true
			return n
		}
	}
}

func (g *gen) item() string {
	if g.r.IntN(2) == 0 {
		return g.object(catFood)
	}
	return g.object(catThing)
}

// Verbs that suit a noun category.
var (
	addVerbs = map[int][]string{catFood: {"buy", "pick", "get", "receive", "bake", "find"},
		catThing: {"buy", "find", "get", "receive", "collect", "win", "make"}}
	subVerbs = map[int][]string{catFood: {"eat", "give away", "sell", "use"},
		catThing: {"give away", "lose", "sell", "use", "donate", "break"}}
)

func (g *gen) verbFor(class int, noun string) string {
	c := catThing
	if nb := nounBySing[noun]; nb != nil && nb.cat == catFood {
		c = catFood
	}
	if class == vAdd {
		return g.pick(addVerbs[c])
	}
	return g.pick(subVerbs[c])
}

// say renders a statement with a random template of its kind.
func (g *gen) say(s stmt) {
	ts := genTemplates[s.kind]
	for {
		t := ts[g.r.IntN(len(ts))]
		if s.D == "" && strings.Contains(t.text, "{D}") {
			continue // no weekday to name
		}
		g.sents = append(g.sents, render(t, s))
		return
	}
}

func (g *gen) step(format string, a ...any) {
	s := withRoutes(g.route, fmt.Sprintf(format, a...), routeShare, &g.routed)
	g.steps = append(g.steps, strings.ToUpper(s[:1])+s[1:])
}

func (g *gen) done(v int64) { g.answer = strconv.FormatInt(v, 10) }

// render fills a template. Nouns are plural unless the number just before
// them is 1.
func render(p *pattern, s stmt) string {
	var b strings.Builder
	t := p.text
	last := int64(-1)
	for i := 0; i < len(t); {
		if t[i] != '{' {
			if strings.HasPrefix(t[i:], " of ") {
				last = -1 // "1 of the apples"
			}
			b.WriteByte(t[i])
			i++
			continue
		}
		j := strings.IndexByte(t[i:], '}')
		slot := t[i+1 : i+j]
		i += j + 1
		plural := last != 1
		switch slot {
		case "P":
			b.WriteString(s.P.render())
		case "Q":
			b.WriteString(s.Q.render())
		case "L":
			b.WriteString(renderList(s.L))
		case "N", "M", "K":
			v := map[string]int64{"N": s.N, "M": s.M, "K": s.K}[slot]
			b.WriteString(strconv.FormatInt(v, 10))
			last = v
			continue
		case "O":
			b.WriteString(form(s.O, plural))
		case "o":
			b.WriteString(form(s.O, false))
		case "C":
			b.WriteString(form(s.C, plural))
		case "c":
			b.WriteString(form(s.C, false))
		case "G":
			b.WriteString(form(s.G, plural))
		case "g":
			b.WriteString(form(s.G, false))
		case "U":
			b.WriteString(form(s.U, plural))
		case "u":
			b.WriteString(form(s.U, false))
		case "T":
			b.WriteString(form(s.T, plural))
		case "t":
			b.WriteString(form(s.R, false))
		case "V+", "V-", "VR", "VD":
			b.WriteString(verbByBase[s.V].third)
		case "v":
			b.WriteString(s.V)
		case "F":
			b.WriteString(fracWords(s.F))
		case "X":
			b.WriteString(multWords(s.X))
		case "D":
			b.WriteString(s.D)
		case "E":
			b.WriteString(s.E)
		}
		last = -1
	}
	out := b.String()
	return strings.ToUpper(out[:1]) + out[1:]
}

func renderList(l []owner) string {
	var parts []string
	for _, o := range l {
		parts = append(parts, o.render())
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func fracWords(f frac) string {
	if f.num == 1 && f.den == 2 {
		return "half"
	}
	d := denName[f.den]
	if f.num == 1 {
		return "one " + d[0]
	}
	return numberName[f.num] + " " + d[1]
}

func multWords(f frac) string {
	switch {
	case f.den != 1:
		return fracWords(f)
	case f.num == 2:
		return "twice"
	}
	return strconv.FormatInt(f.num, 10) + " times"
}

func pl(noun string, n int64) string { return form(noun, n != 1) }

// families lists the problem shapes of each level.
var families = [Levels][]func(*gen){
	{famChange, famChange, famCompare, famExpr},
	{famChange, famCompare, famGroups, famExpr, famTimes},
	{famChange, famGroups, famShare, famPrice, famRate, famExpr},
	{famRemainder, famPack, famFraction, famFraction, famExpr, famFracOf, famChange},
	{famNested, famShopping, famRateConv, famWages, famRemainder, famFraction, famExpr, famWages, famShopping},
}

// bound is the largest starting quantity of a level.
func (g *gen) bound() int64 {
	return [...]int64{10, 40, 200, 1000, 10000}[g.level-1]
}

// famChange: someone's holdings change a few times.
func famChange(g *gen) {
	p, o := g.person(), g.item()
	ops := [...]int{1, 1 + g.r.IntN(2), 2 + g.r.IntN(2), 3 + g.r.IntN(2), 5}[g.level-1]
	max := g.bound()
	v := g.n(max/4+1, max)
	if g.level == 1 {
		v = g.n(3, 10)
	}
	g.say(stmt{kind: kSet, P: p, O: o, N: v})
	var q owner
	haveQ := false
	var qv int64
	for i := 0; i < ops; i++ {
		switch c := g.r.IntN(3); {
		case c == 0 || v < 2:
			n := g.n(1, max/2+1)
			if g.level == 1 {
				n = g.n(1, 10-v/2)
			}
			vb := g.verbFor(vAdd, o)
			g.say(stmt{kind: kAdd, P: p, O: o, N: n, V: vb})
			g.step("%s has %d + %d = %d %s.", p.render(), v, n, v+n, pl(o, v+n))
			v += n
		case c == 1 || g.level < 3:
			n := g.n(1, v-1)
			g.say(stmt{kind: kSub, P: p, O: o, N: n, V: g.verbFor(vSub, o)})
			g.step("%s has %d - %d = %d %s.", p.render(), v, n, v-n, pl(o, v-n))
			v -= n
		default:
			if !haveQ {
				q, haveQ = g.person(), true
				qv = g.n(1, max/2)
				g.say(stmt{kind: kSet, P: q, O: o, N: qv})
			}
			n := g.n(1, v-1)
			g.say(stmt{kind: kGive, P: p, Q: q, O: o, N: n})
			g.step("%s has %d - %d = %d, %s has %d + %d = %d.", p.render(), v, n, v-n, q.render(), qv, n, qv+n)
			v -= n
			qv += n
		}
	}
	if haveQ && g.r.IntN(2) == 0 {
		g.say(stmt{kind: qSum, L: []owner{p, q}, O: o})
		g.step("Together they have %d + %d = %d %s.", v, qv, v+qv, pl(o, v+qv))
		g.done(v + qv)
		return
	}
	g.say(stmt{kind: qHave, P: p, O: o})
	g.done(v)
}

// famCompare: two people, one described relative to the other.
func famCompare(g *gen) {
	p, q, o := g.person(), g.person(), g.item()
	max := g.bound()
	a := g.n(5, max)
	g.say(stmt{kind: kSet, P: p, O: o, N: a})
	var b int64
	switch g.r.IntN(3) {
	case 0:
		d := g.n(1, max/2)
		b = a + d
		g.say(stmt{kind: kMore, P: p, Q: q, O: o, N: d})
		g.step("%s has %d + %d = %d %s.", q.render(), a, d, b, pl(o, b))
	case 1:
		d := g.n(1, a-1)
		b = a - d
		g.say(stmt{kind: kFewer, P: p, Q: q, O: o, N: d})
		g.step("%s has %d - %d = %d %s.", q.render(), a, d, b, pl(o, b))
	default:
		b = g.n(1, max)
		g.say(stmt{kind: kSet, P: q, O: o, N: b})
		if a < b {
			a, b = b, a
			p, q = q, p
		}
		g.say(stmt{kind: qDiff, P: p, Q: q, O: o})
		g.step("%s has %d - %d = %d more %s than %s.", p.render(), a, b, a-b, pl(o, a-b), q.render())
		g.done(a - b)
		return
	}
	if g.level >= 2 && g.r.IntN(2) == 0 {
		g.say(stmt{kind: qSum, L: []owner{p, q}, O: o})
		g.step("Together they have %d + %d = %d %s.", a, b, a+b, pl(o, a+b))
		g.done(a + b)
		return
	}
	g.say(stmt{kind: qHave, P: q, O: o})
	g.done(b)
}

// famTimes: "Amy has 3 times as many".
func famTimes(g *gen) {
	p, q, o := g.person(), g.person(), g.item()
	a, k := g.n(2, 15), g.n(2, 6)
	g.say(stmt{kind: kSet, P: p, O: o, N: a})
	g.say(stmt{kind: kTimes, P: p, Q: q, O: o, X: frac{k, 1}})
	g.step("%s has %d * %d = %d %s.", q.render(), a, k, a*k, pl(o, a*k))
	if g.r.IntN(2) == 0 {
		g.say(stmt{kind: qSum, L: []owner{p, q}, O: o})
		g.step("Together they have %d + %d = %d %s.", a, a*k, a+a*k, pl(o, a+a*k))
		g.done(a + a*k)
		return
	}
	g.say(stmt{kind: qHave, P: q, O: o})
	g.done(a * k)
}

// famGroups: boxes with so many in each, then a change.
func famGroups(g *gen) {
	p, o, c := g.person(), g.item(), g.object(catContainer)
	var k, n int64
	if g.level == 2 {
		k, n = g.n(2, 9), g.n(2, 10)
	} else {
		k, n = g.n(3, 25), g.n(4, 40)
	}
	if g.r.IntN(3) == 0 {
		g.say(stmt{kind: kHasC, P: p, K: k, C: c, O: o})
		g.say(stmt{kind: kPer, C: c, N: n, O: o})
	} else {
		g.say(stmt{kind: kGroups, P: p, K: k, C: c, N: n, O: o})
	}
	v := k * n
	g.step("%d %s with %d %s each make %d * %d = %d %s.", k, pl(c, k), n, pl(o, n), k, n, v, pl(o, v))
	if g.level >= 3 || g.r.IntN(2) == 0 {
		if g.r.IntN(2) == 0 {
			m := g.n(1, v-1)
			g.say(stmt{kind: kSub, P: p, O: o, N: m, V: g.verbFor(vSub, o)})
			g.step("%s has %d - %d = %d %s.", p.render(), v, m, v-m, pl(o, v-m))
			v -= m
		} else {
			m := g.n(1, 2*n)
			g.say(stmt{kind: kAdd, P: p, O: o, N: m, V: g.verbFor(vAdd, o)})
			g.step("%s has %d + %d = %d %s.", p.render(), v, m, v+m, pl(o, v+m))
			v += m
		}
	}
	g.say(stmt{kind: qHave, P: p, O: o})
	g.done(v)
}

// famShare: an exact equal share.
func famShare(g *gen) {
	p, o, grp := g.person(), g.item(), g.object(catGroup)
	k, each := g.n(2, 12), g.n(3, 40)
	v := k * each
	if g.r.IntN(2) == 0 {
		// arrive at v by a purchase first
		a := g.n(1, v-1)
		g.say(stmt{kind: kSet, P: p, O: o, N: a})
		g.say(stmt{kind: kAdd, P: p, O: o, N: v - a, V: g.verbFor(vAdd, o)})
		g.step("%s has %d + %d = %d %s.", p.render(), a, v-a, v, pl(o, v))
	} else {
		extra := g.n(1, 60)
		g.say(stmt{kind: kSet, P: p, O: o, N: v + extra})
		g.say(stmt{kind: kSub, P: p, O: o, N: extra, V: g.verbFor(vSub, o)})
		g.step("%s has %d - %d = %d %s.", p.render(), v+extra, extra, v, pl(o, v))
	}
	g.say(stmt{kind: kShare, P: p, O: o, K: k, G: grp})
	g.say(stmt{kind: qEach, O: o, G: grp})
	g.step("Each %s gets %d / %d = %d %s.", grp, v, k, each, pl(o, each))
	g.done(each)
}

// famRemainder: a share that does not come out even, after a few changes;
// the question asks what is left over.
func famRemainder(g *gen) {
	p, o, grp := g.person(), g.item(), g.object(catGroup)
	k := g.n(3, 9)
	v := k*g.n(5, g.bound()/20) + g.n(1, k-1) // what is shared: never a multiple of k
	add, take := g.n(5, 120), g.n(3, 60)
	var take2 int64
	if g.level == 5 {
		take2 = g.n(3, 60)
	}
	a := v - add + take + take2
	for a < 1 {
		a += k
		v += k
	}
	g.say(stmt{kind: kSet, P: p, O: o, N: a})
	g.say(stmt{kind: kAdd, P: p, O: o, N: add, V: g.verbFor(vAdd, o)})
	g.step("%s has %d + %d = %d %s.", p.render(), a, add, a+add, pl(o, a+add))
	a += add
	for _, t := range []int64{take, take2} {
		if t == 0 {
			continue
		}
		g.say(stmt{kind: kSub, P: p, O: o, N: t, V: g.verbFor(vSub, o)})
		g.step("%s has %d - %d = %d %s.", p.render(), a, t, a-t, pl(o, a-t))
		a -= t
	}
	g.say(stmt{kind: kShare, P: p, O: o, K: k, G: grp})
	g.say(stmt{kind: qRem, P: p, O: o})
	g.step("%d = %d * %d + %d, so the remainder is %d.", a, k, a/k, a%k, a%k)
	g.done(a % k)
}

// famPack: packing into containers of a fixed size.
func famPack(g *gen) {
	p, o, c := g.person(), g.item(), g.object(catContainer)
	size := g.n(4, 12)
	a := g.n(40, 400)
	b := g.n(20, 200)
	g.say(stmt{kind: kSet, P: p, O: o, N: a})
	q := g.person()
	g.say(stmt{kind: kSet, P: q, O: o, N: b})
	g.say(stmt{kind: kGive, P: q, Q: p, O: o, N: b})
	v := a + b
	g.step("%s has %d + %d = %d %s.", p.render(), a, b, v, pl(o, v))
	g.say(stmt{kind: kPack, P: p, O: o, C: c, N: size})
	if v%size != 0 && g.r.IntN(2) == 0 {
		g.say(stmt{kind: qRem, P: p, O: o})
		g.step("%d / %d = %d with remainder %d.", v, size, v/size, v%size)
		g.step("So the remainder is %d.", v%size)
		g.done(v % size)
		return
	}
	g.say(stmt{kind: qFill, P: p, C: c})
	g.step("%d / %d = %d with remainder %d.", v, size, v/size, v%size)
	g.step("So %s fills %d %s.", p.render(), v/size, pl(c, v/size))
	g.done(v / size)
}

var fracs = []frac{{1, 2}, {1, 3}, {2, 3}, {1, 4}, {3, 4}, {1, 5}, {2, 5}, {3, 5}}

// famFraction: a fraction of a quantity given to someone else.
func famFraction(g *gen) {
	p, q, o := g.person(), g.person(), g.item()
	f := fracs[g.r.IntN(len(fracs))]
	unit := g.n(3, g.bound()/f.den/4)
	v := unit * f.den
	part := unit * f.num
	qv := g.n(2, 60)
	g.say(stmt{kind: kSet, P: p, O: o, N: v})
	g.say(stmt{kind: kSet, P: q, O: o, N: qv})
	g.say(stmt{kind: kFracGive, P: p, Q: q, O: o, F: f})
	g.step("%s of %d is %d / %d * %d = %d.", fracWords(f), v, v, f.den, f.num, part)
	g.step("%s has %d - %d = %d %s.", p.render(), v, part, v-part, pl(o, v-part))
	g.step("%s has %d + %d = %d %s.", q.render(), qv, part, qv+part, pl(o, qv+part))
	v -= part
	qv += part
	if g.level == 5 {
		n := g.n(1, qv-1)
		g.say(stmt{kind: kSub, P: q, O: o, N: n, V: g.verbFor(vSub, o)})
		g.step("%s has %d - %d = %d %s.", q.render(), qv, n, qv-n, pl(o, qv-n))
		qv -= n
	}
	if qv < v {
		p, q, v, qv = q, p, qv, v
	}
	g.say(stmt{kind: qDiff, P: q, Q: p, O: o})
	g.step("%s has %d - %d = %d more %s.", q.render(), qv, v, qv-v, pl(o, qv-v))
	g.done(qv - v)
}

// famFracOf: "What is two thirds of 45?"
func famFracOf(g *gen) {
	f := fracs[g.r.IntN(len(fracs))]
	unit := g.n(2, 60)
	v := unit * f.den
	g.say(stmt{kind: qFracOf, F: f, N: v})
	g.step("%d / %d = %d.", v, f.den, unit)
	g.step("%d * %d = %d.", unit, f.num, unit*f.num)
	g.step("So %s of %d is %d.", fracWords(f), v, unit*f.num)
	g.done(unit * f.num)
}

// famPrice: unit prices.
func famPrice(g *gen) {
	p, o := g.person(), g.object(catThing)
	pr, k := g.n(2, 25), g.n(2, 15)
	g.say(stmt{kind: kPrice, O: o, N: pr})
	cost := pr * k
	if g.r.IntN(2) == 0 {
		g.say(stmt{kind: kAdd, P: p, O: o, N: k, V: "buy"})
		g.say(stmt{kind: qSpend, P: p})
		g.step("%d %s cost %d * %d = %d dollars.", k, pl(o, k), k, pr, cost)
		g.done(cost)
		return
	}
	m := cost + g.n(1, 200)
	g.sents = append([]string{render(genTemplates[kSet][0], stmt{kind: kSet, P: p, O: "dollar", N: m})}, g.sents...)
	g.say(stmt{kind: kAdd, P: p, O: o, N: k, V: "buy"})
	g.say(stmt{kind: qHave, P: p, O: "dollar"})
	g.step("%d %s cost %d * %d = %d dollars.", k, pl(o, k), k, pr, cost)
	g.step("%s has %d - %d = %d dollars left.", p.render(), m, cost, m-cost)
	g.done(m - cost)
}

// A rate: who does what, at what pace.
type rateKind struct {
	agent, verb, unit string // agent "" means a person
	per               string
	lo, hi            int64
}

var rateKinds = []rateKind{
	{"printer", "print", "page", "minute", 10, 60},
	{"machine", "make", "toy", "hour", 5, 90},
	{"machine", "fill", "bottle", "minute", 6, 40},
	{"factory", "make", "toy", "day", 50, 900},
	{"bakery", "bake", "cookie", "hour", 20, 150},
	{"car", "travel", "km", "hour", 40, 110},
	{"train", "travel", "km", "hour", 60, 200},
	{"bus", "travel", "mile", "hour", 20, 60},
	{"pump", "pump", "liter", "minute", 5, 50},
	{"", "read", "page", "day", 8, 60},
	{"", "walk", "km", "hour", 3, 6},
	{"", "earn", "dollar", "hour", 8, 40},
	{"", "save", "dollar", "week", 5, 60},
	{"", "type", "word", "minute", 20, 80},
	{"", "bake", "muffin", "hour", 6, 30},
	{"", "write", "page", "day", 2, 15},
}

func (g *gen) rater(rk rateKind) owner {
	if rk.agent != "" {
		return agent(rk.agent)
	}
	return g.person()
}

// famRate: a rate and a duration, in the same time unit.
func famRate(g *gen) {
	rk := rateKinds[g.r.IntN(len(rateKinds))]
	p := g.rater(rk)
	n := g.n(rk.lo, rk.hi)
	t := g.n(2, 12)
	switch g.r.IntN(3) {
	case 0:
		g.say(stmt{kind: kRate, P: p, V: rk.verb, N: n, U: rk.unit, R: rk.per})
		g.say(stmt{kind: qActIn, P: p, V: rk.verb, U: rk.unit, K: t, T: rk.per})
		g.step("In %d %s, %s %s %d * %d = %d %s.", t, pl(rk.per, t), p.render(), verbByBase[rk.verb].third, n, t, n*t, pl(rk.unit, n*t))
		g.done(n * t)
	case 1:
		g.say(stmt{kind: kRate, P: p, V: rk.verb, N: n, U: rk.unit, R: rk.per})
		g.say(stmt{kind: qTake, P: p, V: rk.verb, N: n * t, U: rk.unit, T: rk.per})
		g.step("It takes %d / %d = %d %s.", n*t, n, t, pl(rk.per, t))
		g.done(t)
	default:
		// two working periods on named days
		t2 := g.n(2, 9)
		d1 := g.r.IntN(6)
		g.say(stmt{kind: kRate, P: p, V: rk.verb, N: n, U: rk.unit, R: rk.per})
		vd := rk.verb
		if verbByBase[vd].class&vDur == 0 {
			vd = "work"
		}
		if rk.per != "hour" && rk.per != "minute" {
			// "works 3 days on Monday" reads badly: use plain durations
			g.say(stmt{kind: kDur, P: p, V: vd, K: t, T: rk.per})
			g.step("In %d %s, %s %s %d * %d = %d %s.", t, pl(rk.per, t), p.render(), verbByBase[rk.verb].third, n, t, n*t, pl(rk.unit, n*t))
			g.say(stmt{kind: qAct, P: p, V: rk.verb, U: rk.unit})
			g.done(n * t)
			return
		}
		g.say(stmt{kind: kDur, P: p, V: vd, K: t, T: rk.per, D: days[d1]})
		g.say(stmt{kind: kDur, P: p, V: vd, K: t2, T: rk.per, D: days[d1+1]})
		g.step("%s works %d + %d = %d %s.", p.render(), t, t2, t+t2, pl(rk.per, t+t2))
		g.step("That makes %d * %d = %d %s.", n, t+t2, n*(t+t2), pl(rk.unit, n*(t+t2)))
		g.say(stmt{kind: qAct, P: p, V: rk.verb, U: rk.unit})
		g.done(n * (t + t2))
	}
}

// famRateConv: a rate in one time unit, work given in a larger one.
func famRateConv(g *gen) {
	var rk rateKind
	for rk.per != "minute" && rk.per != "hour" {
		rk = rateKinds[g.r.IntN(len(rateKinds))]
	}
	p := g.rater(rk)
	n := g.n(rk.lo, rk.hi)
	big := map[string]string{"minute": "hour", "hour": "day"}[rk.per]
	conv := minutesIn[big] / minutesIn[rk.per]
	g.say(stmt{kind: kRate, P: p, V: rk.verb, N: n, U: rk.unit, R: rk.per})
	if g.r.IntN(2) == 0 {
		t1, t2 := g.n(1, 4), g.n(1, 4)
		vd := rk.verb
		if verbByBase[vd].class&vDur == 0 {
			vd = "work"
		}
		d := g.r.IntN(6)
		g.say(stmt{kind: kDur, P: p, V: vd, K: t1, T: big, D: days[d]})
		g.say(stmt{kind: kDur, P: p, V: vd, K: t2, T: big, D: days[d+1]})
		t := t1 + t2
		g.say(stmt{kind: qAct, P: p, V: rk.verb, U: rk.unit})
		g.step("%s works %d + %d = %d %s.", p.render(), t1, t2, t, pl(big, t))
		g.step("%d %s is %d * %d = %d %s.", t, pl(big, t), t, conv, t*conv, pl(rk.per, t*conv))
		g.step("That makes %d * %d = %d %s.", n, t*conv, n*t*conv, pl(rk.unit, n*t*conv))
		g.done(n * t * conv)
		return
	}
	t := g.n(2, 5)
	g.say(stmt{kind: qTake, P: p, V: rk.verb, N: n * t * conv, U: rk.unit, T: big})
	g.step("It takes %d / %d = %d %s.", n*t*conv, n, t*conv, pl(rk.per, t*conv))
	g.step("%d %s is %d / %d = %d %s.", t*conv, pl(rk.per, t*conv), t*conv, conv, t, pl(big, t))
	g.done(t)
}

// famWages: money in from hourly work, money out for purchases.
func famWages(g *gen) {
	p := g.person()
	start := g.n(10, 300)
	wage, h1, h2 := g.n(8, 30), g.n(2, 8), g.n(2, 8)
	d := g.r.IntN(6)
	g.say(stmt{kind: kSet, P: p, O: "dollar", N: start})
	g.say(stmt{kind: kRate, P: p, V: "earn", N: wage, U: "dollar", R: "hour"})
	g.say(stmt{kind: kDur, P: p, V: "work", K: h1, T: "hour", D: days[d]})
	g.say(stmt{kind: kDur, P: p, V: "work", K: h2, T: "hour", D: days[d+1]})
	earned := wage * (h1 + h2)
	g.step("%s works %d + %d = %d hours and earns %d * %d = %d dollars.", p.render(), h1, h2, h1+h2, wage, h1+h2, earned)
	o := g.object(catThing)
	pr := g.n(3, min(40, (start+earned)/2))
	k := g.n(2, (start+earned)/pr)
	g.say(stmt{kind: kBuyAt, P: p, K: k, O: o, N: pr})
	cost := k * pr
	g.step("%s now has %d + %d = %d dollars.", p.render(), start, earned, start+earned)
	g.step("%d %s cost %d * %d = %d dollars.", k, pl(o, k), k, pr, cost)
	g.say(stmt{kind: qHave, P: p, O: "dollar"})
	g.step("%s has %d - %d = %d dollars left.", p.render(), start+earned, cost, start+earned-cost)
	g.done(start + earned - cost)
}

// famShopping: two purchases at unit prices from a budget.
func famShopping(g *gen) {
	p, o1, o2 := g.person(), g.object(catThing), g.object(catThing)
	p1, p2 := g.n(3, 60), g.n(3, 60)
	k1, k2 := g.n(2, 12), g.n(2, 12)
	c1, c2 := p1*k1, p2*k2
	m := c1 + c2 + g.n(0, 500)
	g.say(stmt{kind: kSet, P: p, O: "dollar", N: m})
	if g.r.IntN(2) == 0 {
		g.say(stmt{kind: kBuyAt, P: p, K: k1, O: o1, N: p1})
		g.say(stmt{kind: kBuyAt, P: p, K: k2, O: o2, N: p2})
	} else {
		g.say(stmt{kind: kPrice, O: o1, N: p1})
		g.say(stmt{kind: kPrice, O: o2, N: p2})
		g.say(stmt{kind: kAdd, P: p, O: o1, N: k1, V: "buy"})
		g.say(stmt{kind: kAdd, P: p, O: o2, N: k2, V: "buy"})
	}
	g.step("%d %s cost %d * %d = %d dollars.", k1, pl(o1, k1), k1, p1, c1)
	g.step("%d %s cost %d * %d = %d dollars.", k2, pl(o2, k2), k2, p2, c2)
	g.step("In total %s spends %d + %d = %d dollars.", p.render(), c1, c2, c1+c2)
	if g.r.IntN(2) == 0 {
		g.say(stmt{kind: qSpend, P: p})
		g.done(c1 + c2)
		return
	}
	g.say(stmt{kind: qHave, P: p, O: "dollar"})
	g.step("%s has %d - %d = %d dollars left.", p.render(), m, c1+c2, m-c1-c2)
	g.done(m - c1 - c2)
}

// famNested: containers inside containers, then a sale.
func famNested(g *gen) {
	st := agent(g.pick([]string{"store", "shop", "school", "library", "factory", "farm"}))
	outer, inner := g.object(catContainer), g.object(catContainer)
	o := g.item()
	a, b, c := g.n(3, 20), g.n(2, 12), g.n(4, 30)
	g.say(stmt{kind: kSet, P: st, O: outer, N: a})
	g.say(stmt{kind: kPer, C: outer, N: b, O: inner})
	g.say(stmt{kind: kPer, C: inner, N: c, O: o})
	total := a * b * c
	sold := g.n(1, total-1)
	g.say(stmt{kind: kSub, P: st, O: o, N: sold, V: "sell"})
	g.step("There are %d * %d = %d %s.", a, b, a*b, pl(inner, a*b))
	g.step("They hold %d * %d = %d %s.", a*b, c, total, pl(o, total))
	g.step("After selling %d, %d - %d = %d %s are left.", sold, total, sold, total-sold, pl(o, total-sold))
	g.say(stmt{kind: qHave, P: st, O: o})
	g.done(total - sold)
}

// famExpr: arithmetic with order of operations.
func famExpr(g *gen) {
	var e *enode
	switch g.level {
	case 1:
		a, b := g.n(1, 10), g.n(1, 10)
		if g.r.IntN(2) == 0 || a < b {
			e = bin('+', leaf(a), leaf(b))
		} else {
			e = bin('-', leaf(a), leaf(b))
		}
	case 2:
		a, b, c := g.n(2, 10), g.n(2, 10), g.n(1, 50)
		e = bin('+', bin('*', leaf(a), leaf(b)), leaf(c))
		if g.r.IntN(2) == 0 {
			e = bin('+', leaf(c), bin('*', leaf(a), leaf(b)))
		}
	case 3:
		d, q := g.n(2, 12), g.n(2, 30)
		e = bin('+', bin('/', leaf(d*q), leaf(d)), bin('*', leaf(g.n(2, 20)), leaf(g.n(2, 20))))
		if g.r.IntN(2) == 0 {
			e = bin('-', bin('*', leaf(g.n(10, 30)), leaf(g.n(10, 30))), bin('/', leaf(d*q), leaf(d)))
		}
	case 4:
		a, b, c := g.n(2, 30), g.n(2, 30), g.n(2, 12)
		d, q := g.n(2, 9), g.n(2, 20)
		e = bin('-', bin('*', bin('+', leaf(a), leaf(b)), leaf(c)), bin('/', leaf(d*q), leaf(d)))
		if g.r.IntN(2) == 0 {
			e = bin('+', leaf(g.n(1, 99)), bin('*', leaf(c), bin('-', leaf(a+b), leaf(b))))
		}
	default:
		a, b, c := g.n(10, 200), g.n(10, 200), g.n(2, 30)
		d, q := g.n(2, 25), g.n(5, 90)
		e = bin('+', bin('*', bin('+', leaf(a), leaf(b)), leaf(c)), bin('-', bin('/', leaf(d*q), leaf(d)), leaf(g.n(1, q))))
		if g.r.IntN(8) == 0 {
			// a rare fraction answer
			e = bin('+', bin('/', leaf(g.n(1, 9)), leaf(g.n(2, 9))), leaf(g.n(1, 20)))
		}
	}
	s := stmt{kind: qExpr, E: e.String()}
	g.say(s)
	v := e.eval(g)
	g.answer = formatRat(v)
}

// enode is an expression tree, rendered with the fewest parentheses.
type enode struct {
	op   byte // 0 for a leaf
	v    int64
	l, r *enode
}

func leaf(v int64) *enode             { return &enode{v: v} }
func bin(op byte, l, r *enode) *enode { return &enode{op: op, l: l, r: r} }

func prec(op byte) int {
	switch op {
	case '+', '-':
		return 1
	case '*', '/':
		return 2
	}
	return 3
}

func (e *enode) String() string {
	if e.op == 0 {
		return strconv.FormatInt(e.v, 10)
	}
	l, r := e.l.String(), e.r.String()
	if prec(e.l.op) < prec(e.op) {
		l = "(" + l + ")"
	}
	if prec(e.r.op) < prec(e.op) || prec(e.r.op) == prec(e.op) && (e.op == '-' || e.op == '/') {
		r = "(" + r + ")"
	}
	return l + " " + string(e.op) + " " + r
}

// eval computes the value bottom-up, writing one solution step per operation.
func (e *enode) eval(g *gen) *big.Rat {
	if e.op == 0 {
		return new(big.Rat).SetInt64(e.v)
	}
	l, r := e.l.eval(g), e.r.eval(g)
	v := new(big.Rat)
	switch e.op {
	case '+':
		v.Add(l, r)
	case '-':
		v.Sub(l, r)
	case '*':
		v.Mul(l, r)
	case '/':
		v.Quo(l, r)
	}
	g.step("%s %c %s = %s.", formatRat(l), e.op, formatRat(r), formatRat(v))
	return v
}
