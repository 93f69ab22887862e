package selfinstruct

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// perturb makes a plausible variant of a problem: numbers changed, a few
// words dropped or swapped, so the 10,000-problem pool is not 20 copies of
// the seeds (which would let the pruning bound do unrealistically well or
// badly).
func perturb(r *rand.Rand, s string) string {
	ws := strings.Fields(s)
	for i := range ws {
		switch x := r.IntN(10); {
		case x == 0 && len(ws) > 4:
			ws[i] = ""
		case x == 1:
			ws[i] = strconv.Itoa(r.IntN(1000))
		case x == 2 && i > 0:
			ws[i], ws[i-1] = ws[i-1], ws[i]
		}
	}
	return strings.Join(ws, " ")
}

func poolOf(b *testing.B, n int) (*Pool, []string) {
	seeds := loadSeeds(b)
	r := rand.New(rand.NewPCG(1, 1))
	p := NewPool()
	for i := range n {
		s := seeds[i%len(seeds)]
		if i >= len(seeds) {
			s = perturb(r, s)
		}
		p.Add(s)
	}
	// Candidates: fresh perturbations, so some are near-duplicates (> 0.7)
	// and most are not, as in a real round.
	cands := make([]string, 64)
	for i := range cands {
		cands[i] = perturb(r, perturb(r, seeds[r.IntN(len(seeds))]))
	}
	return p, cands
}

// BenchmarkRougeOneVs10k is the acceptance measurement: one candidate
// against a 10,000-problem pool must take < 50 ms on 2 cores.
//
//	go test -run '^$' -bench RougeOneVs10k -cpu 2 ./engine/selfinstruct/
func BenchmarkRougeOneVs10k(b *testing.B) {
	p, cands := poolOf(b, 10000)
	b.Run("MaxF1", func(b *testing.B) {
		similar := 0
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if f, _ := p.MaxF1(cands[i%len(cands)]); f > DefaultThreshold {
				similar++
			}
		}
		reportMS(b)
		b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "workers")
	})
	b.Run("Similar", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p.Similar(cands[i%len(cands)], DefaultThreshold)
		}
		reportMS(b)
	})
}

func reportMS(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
}

// A completion as a model writes it: an intro, numbered problems with LaTeX,
// one keyword hit, one too short, one answer-like item, trailing chatter.
const realisticCompletion = "Here are some new questions:\n\n" +
	"9. A rectangle has a perimeter of 56 cm and its length is 4 cm more than its width. What is its area, in square centimeters?\n" +
	"10. If $f(x) = 2x^2 - 3x + 7$, what is the value of $f(f(1))$?\n" +
	"11. Draw the graph of $y = |x - 2|$ and find where it meets the line $y = 3$.\n" +
	"12. Find $x$.\n" +
	"13. How many positive three-digit integers are divisible by both 6 and 15?\n" +
	"14. Simplify $\\sqrt{75} + \\sqrt{48} - \\sqrt{27}$, expressing your answer in simplest radical form.\n" +
	"15. The sum of three consecutive even integers is 138. What is the product of the smallest and the largest?\n" +
	"16. In triangle $ABC$, $AB = 13$, $BC = 14$ and $CA = 15$. Compute the length of the altitude from $A$ to $BC$.\n\n" +
	"I hope these questions help your students practise!"

func BenchmarkParse(b *testing.B) {
	n := 0
	for b.Loop() {
		n += len(ParseCompletion(realisticCompletion, CapitalizeFirst))
	}
	b.SetBytes(int64(len(realisticCompletion)))
	b.ReportMetric(float64(n)/float64(b.N), "candidates/op")
}

// BenchmarkParseFilter is the whole per-completion path against the 500
// seed problems (pool rebuilt outside the timer, since acceptance grows it).
func BenchmarkParseFilter(b *testing.B) {
	seeds := loadSeeds(b)
	accepted := 0
	for b.Loop() {
		b.StopTimer()
		p := NewPool()
		for _, s := range seeds {
			p.Add(s)
		}
		f := NewFilter(p)
		b.StartTimer()
		accepted += len(f.Process(realisticCompletion).Accepted)
	}
	b.ReportMetric(float64(accepted)/float64(b.N), "accepted/op")
	b.ReportMetric(float64(b.Elapsed())/float64(time.Microsecond)/float64(b.N), "µs/op")
}

func BenchmarkPoolAdd(b *testing.B) {
	seeds := loadSeeds(b)
	p := NewPool()
	for i := 0; b.Loop(); i++ {
		p.Add(seeds[i%len(seeds)])
	}
}
