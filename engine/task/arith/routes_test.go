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

// Every chain of equalities in every solution holds, both routes are taken, and the route never
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

	r := rand.New(rand.NewPCG(1, 2))
	always := func(s string) string { return withRoutes(r, s, 1) }
	require.Equal(t, "448 * 3 = 400 * 3 + 48 * 3 = 1200 + 144 = 1344", always("448 * 3 = 1344"))
	require.Equal(t, "3 * 26 = 20 * 3 + 6 * 3 = 60 + 18 = 78", always("3 * 26 = 78"))
	require.Equal(t, "Has 19 + 21 = 19 + 20 + 1 = 39 + 1 = 40.", always("Has 19 + 21 = 40."))
	require.Equal(t, "95 - 37 = 95 - 30 - 7 = 65 - 7 = 58", always("95 - 37 = 58"))
	// Nothing to split (one digit, round numbers), and fractions are left alone.
	same := "7 + 2 = 9; 30 + 20 = 50; 1/2 + 13 = 27/2; 40 * 6 = 240"
	require.Equal(t, same, always(same))
	require.Equal(t, "448 * 3 = 1344", withRoutes(r, "448 * 3 = 1344", 0))
}
