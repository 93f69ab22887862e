package arith

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
)

// Solutions take one of several routes through each multi-digit operation, chosen uniformly at random
// per operation: straight ("448 * 3 = 1344"), by place value ("448 * 3 = 400 * 3 + 48 * 3 = 1200 + 144
// = 1344", or digit by digit), by rounding ("448 * 3 = 450 * 3 - 2 * 3 = 1350 - 6 = 1344") or by
// repeated addition. A model trained on all of them samples all of them, and each route computes
// different intermediate numbers, so its slips on one route are independent of the others' while its
// right answers agree: the answer distribution concentrates on the right answer even where the single
// most likely path is wrong. That is what makes the majority vote of SeRL's self-rewarding carry more
// signal than one greedy answer (self-consistency). The route has its own random stream, so the problem
// text of a seed is the same whichever route its solution takes.

// calcPattern finds "A op B = C" over whole non-negative integers.
var calcPattern = regexp.MustCompile(`(\d+) ([-+*]) (\d+) = (\d+)`)

// maxRouted caps the operations of one solution that leave the straight route, so that the longest
// solutions stay inside the response budget (320 tokens for the built-in model).
const maxRouted = 3

// routeShare is the probability of leaving the straight route where an operation has others; the
// others then share it equally. With the straight route counted as one more, every route of an
// operation is equally likely.
const routeShare = -1

// withRoutes rewrites the operations of one solution step, at most *budget of them (decremented). share
// is the probability of a non-straight route; a negative share makes all routes, the straight one
// included, equally likely.
func withRoutes(r *rand.Rand, s string, share float64, budget *int) string {
	var b strings.Builder
	last := 0
	for _, m := range calcPattern.FindAllStringSubmatchIndex(s, -1) {
		// Whole numbers only: not part of a fraction, a decimal or a longer number.
		if m[0] > 0 && strings.ContainsRune("0123456789/.", rune(s[m[0]-1])) {
			continue
		}
		if m[1] < len(s) && strings.ContainsRune("0123456789/", rune(s[m[1]])) {
			continue
		}
		a, _ := strconv.ParseInt(s[m[2]:m[3]], 10, 64)
		bv, _ := strconv.ParseInt(s[m[6]:m[7]], 10, 64)
		op := s[m[4]]
		rs := routes(op, a, bv)
		if len(rs) == 0 || *budget <= 0 {
			continue
		}
		var long string
		if share < 0 {
			if k := r.IntN(len(rs) + 1); k < len(rs) {
				long = rs[k]
			}
		} else if r.Float64() < share {
			long = rs[r.IntN(len(rs))]
		}
		if long == "" {
			continue
		}
		*budget--
		b.WriteString(s[last:m[0]])
		b.WriteString(s[m[2]:m[3]] + " " + string(op) + " " + s[m[6]:m[7]] + " = " + long)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// routes gives the chains after "a op b = " that reach the result another way than straight, each
// ending in the result. Every link is an operation a small model can learn: one place value at a time,
// or a round number.
func routes(op byte, a, b int64) []string {
	var out []string
	add := func(parts ...string) { out = append(out, strings.Join(parts, " = ")) }
	switch op {
	case '+', '-':
		o := " " + string(op) + " "
		apply := func(x, y int64) int64 {
			if op == '-' {
				return x - y
			}
			return x + y
		}
		res := apply(a, b)
		// Place value, leading digit first: 398 + 184 = 398 + 100 + 84 = 498 + 84 = 582.
		if hi, lo := placeSplit(b); hi > 0 && lo > 0 {
			add(itoa(a)+o+itoa(hi)+o+itoa(lo), itoa(apply(a, hi))+o+itoa(lo), itoa(res))
		}
		// Digit by digit: 398 + 184 = 398 + 100 + 80 + 4 = 498 + 80 + 4 = 578 + 4 = 582.
		if ps := placeParts(b); len(ps) >= 3 {
			var chain []string
			for i, acc := 0, a; i < len(ps); i++ {
				terms := []string{itoa(acc)}
				for _, p := range ps[i:] {
					terms = append(terms, itoa(p))
				}
				chain = append(chain, strings.Join(terms, o))
				acc = apply(acc, ps[i])
			}
			add(append(chain, itoa(res))...)
		}
		// Rounding the second number up to a round ten: 95 - 37 = 95 - 40 + 3 = 55 + 3 = 58.
		if up, d := b+10-b%10, 10-b%10; b >= 10 && b%10 >= 6 && (op == '+' || a >= up) {
			back := " - "
			if op == '-' {
				back = " + "
			}
			add(itoa(a)+o+itoa(up)+back+itoa(d), itoa(apply(a, up))+back+itoa(d), itoa(res))
		}
		// Splitting the first number of a sum: 398 + 184 = 300 + 98 + 184 = 300 + 282 = 582.
		if hi, lo := placeSplit(a); op == '+' && hi > 0 && lo > 0 && b >= 10 {
			add(itoa(hi)+" + "+itoa(lo)+" + "+itoa(b), itoa(hi)+" + "+itoa(lo+b), itoa(res))
		}
	case '*':
		x, y := a, b // x is split: the larger factor
		if y > x {
			x, y = y, x
		}
		if y < 2 || x < 10 {
			return nil
		}
		res := a * b
		ys := itoa(y)
		// Place value, leading digit first: 448 * 3 = 400 * 3 + 48 * 3 = 1200 + 144 = 1344.
		if hi, lo := placeSplit(x); hi > 0 && lo > 0 {
			add(itoa(hi)+" * "+ys+" + "+itoa(lo)+" * "+ys, itoa(hi*y)+" + "+itoa(lo*y), itoa(res))
		}
		// Digit by digit: 448 * 3 = 400 * 3 + 40 * 3 + 8 * 3 = 1200 + 120 + 24 = 1320 + 24 = 1344.
		if ps := placeParts(x); len(ps) >= 3 && y < 10 {
			var prods, vals []string
			for _, p := range ps {
				prods, vals = append(prods, itoa(p)+" * "+ys), append(vals, itoa(p*y))
			}
			chain := []string{strings.Join(prods, " + "), strings.Join(vals, " + ")}
			sum := ps[0] * y
			for i := 1; i+1 < len(ps); i++ {
				sum += ps[i] * y
				rest := []string{itoa(sum)}
				for _, p := range ps[i+1:] {
					rest = append(rest, itoa(p*y))
				}
				chain = append(chain, strings.Join(rest, " + "))
			}
			add(append(chain, itoa(res))...)
		}
		// Rounding up to a round ten: 448 * 3 = 450 * 3 - 2 * 3 = 1350 - 6 = 1344.
		if x%10 >= 7 {
			up, d := x+10-x%10, 10-x%10
			add(itoa(up)+" * "+ys+" - "+itoa(d)+" * "+ys, itoa(up*y)+" - "+itoa(d*y), itoa(res))
		}
		// Repeated addition of a small count: 448 * 3 = 448 + 448 + 448 = 896 + 448 = 1344.
		if y <= 3 {
			xs := itoa(x)
			if y == 2 {
				add(xs+" + "+xs, itoa(res))
			} else {
				add(xs+" + "+xs+" + "+xs, itoa(2*x)+" + "+xs, itoa(res))
			}
		}
	}
	return out
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// placeSplit breaks v ≥ 10 into its leading digit's place value and the rest (448 → 400, 48); below 10 it
// gives (0, v).
func placeSplit(v int64) (hi, lo int64) {
	if v < 10 {
		return 0, v
	}
	p := int64(1)
	for p*10 <= v {
		p *= 10
	}
	hi = v / p * p
	return hi, v - hi
}

// placeParts breaks v into its nonzero place values, largest first (3045 → 3000, 40, 5).
func placeParts(v int64) []int64 {
	var ps []int64
	for v > 0 {
		hi, lo := placeSplit(v)
		if hi == 0 {
			hi, lo = lo, 0
		}
		ps = append(ps, hi)
		v = lo
	}
	return ps
}
