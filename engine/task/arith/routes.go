package arith

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
)

// Solutions take one of two routes through each multi-digit operation: straight ("448 * 3 = 1344")
// or by place value ("448 * 3 = 400 * 3 + 48 * 3 = 1200 + 144 = 1344"), chosen at random per
// operation. A model trained on both samples both, so its errors on one route are independent of the
// other's and its right answers agree — what makes the majority vote of SeRL's self-rewarding carry
// more signal than one greedy answer (self-consistency). The route has its own random stream, so the
// problem text of a seed is the same whichever route its solution takes.

// calcPattern finds "A op B = C" over whole non-negative integers.
var calcPattern = regexp.MustCompile(`(\d+) ([-+*]) (\d+) = (\d+)`)

// routeShare is the probability of the place-value route where an operation has one.
const routeShare = 0.5

// withRoutes rewrites the operations of one solution step.
func withRoutes(r *rand.Rand, s string, share float64) string {
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
		long := placeValue(op, a, bv)
		if long == "" || r.Float64() >= share {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(s[m[2]:m[3]] + " " + string(op) + " " + s[m[6]:m[7]] + " = " + long)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// placeValue is the chain after "a op b = " that splits a number at its leading digit, ending in the
// result, or "" where the split would add nothing.
func placeValue(op byte, a, b int64) string {
	itoa := func(v int64) string { return strconv.FormatInt(v, 10) }
	switch op {
	case '+', '-':
		hi, lo := placeSplit(b)
		if hi == 0 || lo == 0 {
			return ""
		}
		mid := a + hi
		if op == '-' {
			mid = a - hi
		}
		res := mid + lo
		if op == '-' {
			res = mid - lo
		}
		o := " " + string(op) + " "
		return itoa(a) + o + itoa(hi) + o + itoa(lo) + " = " + itoa(mid) + o + itoa(lo) + " = " + itoa(res)
	case '*':
		x, y := a, b // x is split: the larger factor
		if y > x {
			x, y = y, x
		}
		hi, lo := placeSplit(x)
		if hi == 0 || lo == 0 || y < 2 {
			return ""
		}
		return itoa(hi) + " * " + itoa(y) + " + " + itoa(lo) + " * " + itoa(y) + " = " +
			itoa(hi*y) + " + " + itoa(lo*y) + " = " + itoa(a*b)
	}
	return ""
}

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
