package selfinstruct

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		// Hand-worked: lower-case, every run outside [a-z0-9] → space.
		// "\frac{14!}{5!9!}" → " frac 14 5 9 " → frac, 14, 5, 9.
		{"What is the value of $\\frac{14!}{5!9!}$?", []string{"what", "is", "the", "value", "of", "frac", "14", "5", "9"}},
		{"Simplify $(x+15)+(100x+15)$.", []string{"simplify", "x", "15", "100x", "15"}},
		{"x_1 = 3.5", []string{"x", "1", "3", "5"}},
		{"café au lait", []string{"caf", "au", "lait"}}, // é is a separator after lower()
		{"\u212Aelvin", []string{"kelvin"}},             // Kelvin sign lower-cases to ASCII k
		{"\u0130stanbul", []string{"i", "stanbul"}},     // İ → "i" + U+0307, which separates
		{"ΣΑΣ", nil},
		{"$$ ? !", nil},
		{"", nil},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Tokenize(c.in), "%q", c.in)
	}
}

func TestRougeLHandComputed(t *testing.T) {
	// 1. Identical: [what is 2 2] vs itself, LCS 4, P = R = 4/4, F = 1.
	assert.Equal(t, 1.0, RougeL("What is 2+2?", "what is 2 + 2"))

	// 2. Disjoint: [apple pie] vs [banana split], LCS 0 → F = 0.
	assert.Equal(t, 0.0, RougeL("apple pie", "banana split"))

	// 3. Tokenisation of LaTeX: [what is the value of frac 14 5 9] (9) vs
	//    [value of frac 14 5 9] (6): LCS 6, P = 6/6, R = 6/9,
	//    F = 2·1·(2/3)/(1 + 2/3) = (4/3)/(5/3) = 0.8.
	assert.InDelta(t, 0.8, RougeL("What is the value of $\\frac{14!}{5!9!}$?", "value of \\frac{14!}{5!9!}"), 1e-15)

	// 4. Partial overlap: [find the sum of the roots] (6) vs
	//    [find the product of the roots of x] (8): LCS = find the of the roots = 5,
	//    P = 5/8, R = 5/6, F = 2·(25/48)/(35/24) = 5/7 ≈ 0.714 > 0.7 → similar.
	f := RougeL("Find the sum of the roots", "Find the product of the roots of x")
	assert.InDelta(t, 5.0/7, f, 1e-15)
	assert.Greater(t, f, DefaultThreshold)

	// 5. Order matters: [a b c d] vs [d c b a], LCS 1, P = R = 1/4, F = 0.25.
	assert.Equal(t, 0.25, RougeL("a b c d", "d c b a"))

	// 6. One side without tokens scores 0 (rouge_score returns a zero Score).
	assert.Equal(t, 0.0, RougeL("$ ? $", "anything at all"))
	assert.Equal(t, 0.0, RougeL("", ""))

	// 7. Floating point decides at the boundary, as in Python: LCS 7 with
	//    lengths 8 and 12 is exactly 0.7 on paper, but 2*(7/8)*(7/12)/(7/8+7/12)
	//    evaluates to 0.7000000000000001 in float64 (CPython agrees) and is
	//    rejected; lengths 10 and 10 give exactly 0.7 and pass.
	above := RougeL("a b c d e f g x", "a b c d e f g p q r s t")
	assert.Equal(t, 0.7000000000000001, above)
	assert.Greater(t, above, DefaultThreshold)
	assert.Equal(t, 0.7, RougeL("a b c d e f g x y z", "a b c d e f g p q r"))
}

// lcsRef is the textbook full-table LCS, an independent check of the
// single-row version.
func lcsRef(a, b []uint32) int32 {
	t := make([][]int32, len(a)+1)
	for i := range t {
		t[i] = make([]int32, len(b)+1)
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			if a[i-1] == b[j-1] {
				t[i][j] = t[i-1][j-1] + 1
			} else {
				t[i][j] = max(t[i-1][j], t[i][j-1])
			}
		}
	}
	return t[len(a)][len(b)]
}

func TestLCSMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	row := make([]int32, 64)
	for range 2000 {
		a := make([]uint32, r.IntN(40))
		b := make([]uint32, r.IntN(40))
		alpha := uint32(1 + r.IntN(6))
		for i := range a {
			a[i] = r.Uint32N(alpha)
		}
		for i := range b {
			b[i] = r.Uint32N(alpha)
		}
		require.Equal(t, lcsRef(a, b), lcs(a, b, row), "%v %v", a, b)
	}
}

// randomProblems makes texts over a small vocabulary so that high scores,
// ties and exact duplicates all occur.
func randomProblems(r *rand.Rand, n int) []string {
	words := []string{"find", "the", "sum", "of", "x", "2", "3", "roots", "value", "if", "is", "what", "$\\frac{1}{2}$", "area", "a", "b"}
	out := make([]string, n)
	for i := range out {
		k := 1 + r.IntN(12)
		ws := make([]string, k)
		for j := range ws {
			ws[j] = words[r.IntN(len(words))]
		}
		out[i] = strings.Join(ws, " ")
	}
	return out
}

func TestPoolMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	texts := randomProblems(r, 1500) // several chunks, so several workers run
	texts = append(texts, "$$", "")  // problems without tokens
	var pools []*Pool
	for _, workers := range []int{1, 2, 5} {
		p := NewPool()
		p.SetWorkers(workers)
		for i, s := range texts {
			require.Equal(t, i, p.Add(s))
		}
		require.Equal(t, len(texts), p.Len())
		pools = append(pools, p)
	}
	for _, c := range randomProblems(r, 40) {
		best, idx := -1.0, -1
		for i, s := range texts {
			if f := RougeL(c, s); f > best {
				best, idx = f, i
			}
		}
		for _, p := range pools {
			got, gi := p.MaxF1(c)
			require.Equal(t, best, got, "workers=%d %q", p.workers, c)
			require.Equal(t, idx, gi, "first index reaching the max, workers=%d %q", p.workers, c)
			for _, th := range []float64{0, 0.3, 0.5, 0.7, 0.9, 1} {
				require.Equal(t, best > th, p.Similar(c, th), "workers=%d th=%v %q", p.workers, th, c)
			}
		}
	}
}

func TestPoolEdgeCases(t *testing.T) {
	p := NewPool()
	f, i := p.MaxF1("anything")
	assert.Equal(t, 0.0, f)
	assert.Equal(t, -1, i)
	assert.False(t, p.Similar("anything", 0.7))

	p.Add("Find the sum of the roots")
	p.Add("Completely different words here")
	p.Add("Find the sum of the roots") // duplicate: the first index wins
	f, i = p.MaxF1("find the SUM of the roots!")
	assert.Equal(t, 1.0, f)
	assert.Equal(t, 0, i)

	// Unknown tokens only: score 0, still reported against the first problem.
	f, i = p.MaxF1("zebra quokka")
	assert.Equal(t, 0.0, f)
	assert.Equal(t, 0, i)
	assert.False(t, p.Similar("zebra quokka", 0))

	// A candidate without tokens scores 0 against everything.
	f, _ = p.MaxF1("$$")
	assert.Equal(t, 0.0, f)
	assert.True(t, p.Similar("Find the product of the roots of x", 0.7)) // 5/7, case 4 above
}

func ExampleRougeL() {
	fmt.Printf("%.4f\n", RougeL("Find the sum of the roots", "Find the product of the roots of x"))
	// Output: 0.7143
}

func TestPoolWithSeedProblems(t *testing.T) {
	seeds := loadSeeds(t)
	p := NewPool()
	for _, s := range seeds {
		p.Add(s)
	}
	r := rand.New(rand.NewPCG(9, 9))
	for k := range 40 {
		i := r.IntN(len(seeds))
		// A seed against the seeds: a perfect match at its own index or at an
		// earlier identical one.
		f, idx := p.MaxF1(seeds[i])
		require.Equal(t, 1.0, f)
		require.LessOrEqual(t, idx, i)
		require.Equal(t, 1.0, RougeL(seeds[idx], seeds[i]))
		// Perturbed seeds (long [asy] blocks included) against brute force.
		c := seeds[i]
		if k%2 == 0 {
			c = strings.Join(strings.Fields(c)[len(strings.Fields(c))/3:], " ")
		}
		best, bi := -1.0, -1
		for j, s := range seeds {
			if g := RougeL(c, s); g > best {
				best, bi = g, j
			}
		}
		f, idx = p.MaxF1(c)
		require.Equal(t, best, f)
		require.Equal(t, bi, idx)
	}
}
