package arith

import (
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var chainPattern = regexp.MustCompile(`\d+(?: [-+*/] \d+)*(?: = \d+(?: [-+*/] \d+)*)+`)

// evalFlat evaluates "a op b op c …" with * and / before + and -.
func evalFlat(t *testing.T, s string) *big.Rat {
	f := strings.Fields(s)
	var terms []*big.Rat
	var signs []int
	cur, _ := new(big.Rat).SetString(f[0])
	sign := 1
	for i := 1; i+1 < len(f); i += 2 {
		v, ok := new(big.Rat).SetString(f[i+1])
		require.True(t, ok, s)
		switch f[i] {
		case "*":
			cur.Mul(cur, v)
		case "/":
			cur.Quo(cur, v)
		default:
			terms, signs = append(terms, cur), append(signs, sign)
			cur, sign = v, map[string]int{"+": 1, "-": -1}[f[i]]
		}
	}
	terms, signs = append(terms, cur), append(signs, sign)
	sum := new(big.Rat)
	for i, x := range terms {
		if signs[i] < 0 {
			sum.Sub(sum, x)
		} else {
			sum.Add(sum, x)
		}
	}
	return sum
}

// Every chain of equalities in every solution holds, the routes are taken, and the route never
// changes the problem text.
func TestSolutionRoutes(t *testing.T) {
	long := 0
	for seed := uint64(0); seed < 3000; seed++ {
		level := 1 + int(seed%Levels)
		p := Generate(seed, level)
		for _, loc := range chainPattern.FindAllStringIndex(p.Solution, -1) {
			m := p.Solution[loc[0]:loc[1]]
			if strings.HasPrefix(p.Solution[loc[1]:], " with remainder") {
				continue // integer division
			}
			parts := strings.Split(m, " = ")
			want := evalFlat(t, parts[len(parts)-1])
			for _, e := range parts[:len(parts)-1] {
				require.Zero(t, want.Cmp(evalFlat(t, e)), "%q in %q", m, p.Solution)
			}
			if len(parts) > 2 {
				long++
			}
		}
	}
	require.Greater(t, long, 500, "place-value routes appear")

	// Each route, spelled out; one digit and round numbers have nothing to split, and fractions are
	// left alone.
	require.Equal(t, []string{
		"400 * 3 + 48 * 3 = 1200 + 144 = 1344",
		"400 * 3 + 40 * 3 + 8 * 3 = 1200 + 120 + 24 = 1320 + 24 = 1344",
		"450 * 3 - 2 * 3 = 1350 - 6 = 1344",
		"448 + 448 + 448 = 896 + 448 = 1344",
	}, routes('*', 448, 3))
	require.Equal(t, []string{"20 * 3 + 6 * 3 = 60 + 18 = 78", "26 + 26 + 26 = 52 + 26 = 78"}, routes('*', 3, 26))
	require.Equal(t, []string{
		"398 + 100 + 84 = 498 + 84 = 582",
		"398 + 100 + 80 + 4 = 498 + 80 + 4 = 578 + 4 = 582",
		"300 + 98 + 184 = 300 + 282 = 582",
	}, routes('+', 398, 184))
	require.Equal(t, []string{"95 - 30 - 7 = 65 - 7 = 58", "95 - 40 + 3 = 55 + 3 = 58"}, routes('-', 95, 37))
	require.Equal(t, []string{"19 + 20 + 1 = 39 + 1 = 40", "10 + 9 + 21 = 10 + 30 = 40"}, routes('+', 19, 21))
	require.Empty(t, routes('-', 20, 6))
	require.Empty(t, routes('*', 40, 1))

	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]int{}
	for range 5000 {
		b := maxRouted
		seen[withRoutes(r, "Has 448 * 3 = 1344.", routeShare, &b)]++
	}
	require.Len(t, seen, 5, "the straight route and the four others")
	for s, n := range seen {
		require.InDelta(t, 1000, n, 150, "every route equally likely: %q", s)
	}
	many, some := 9, 1
	same := "7 + 2 = 9; 30 + 20 = 50; 1/2 + 13 = 27/2; 40 * 6 = 240"
	require.Equal(t, same, withRoutes(r, same, 1, &many))
	require.Equal(t, "448 * 3 = 1344", withRoutes(r, "448 * 3 = 1344", 0, &many))
	// The budget: one rewritten operation, then straight.
	require.Equal(t, "448 * 3 = 448 + 448 + 448 = 896 + 448 = 1344; 95 - 37 = 58",
		withRoutes(rand.New(rand.NewPCG(1, 1)), "448 * 3 = 1344; 95 - 37 = 58", 1, &some))
	require.Zero(t, some)
}
