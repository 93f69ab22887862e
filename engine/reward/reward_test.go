package reward

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/serl-go/serl/engine/mathans"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func boxed(s string) string {
	return "Let us compute carefully. So the answer is $\\boxed{" + s + "}$."
}

func TestMajorityFigureExample(t *testing.T) {
	// docs/SERL.md §3.1 (the paper's figure): answers 2010, 1995, 2010, 2000 → rewards 1, 0, 1, 0.
	r, rep := MajorityResponses([]string{boxed("2010"), boxed("1995"), boxed("2010"), boxed("2000")})
	assert.Equal(t, []float64{1, 0, 1, 0}, r)
	assert.Equal(t, 0, rep)
	assert.InDelta(t, 0.5, Share(r), 1e-12)
}

func TestMajorityTiesGoToLowestIndex(t *testing.T) {
	r, rep := MajorityResponses([]string{boxed("3"), boxed("7"), boxed("7"), boxed("3")})
	assert.Equal(t, 0, rep)
	assert.Equal(t, []float64{1, 0, 0, 1}, r)

	r, rep = MajorityResponses([]string{boxed("5"), boxed("7"), boxed("\\frac{14}{2}"), boxed("3"), boxed("3")})
	assert.Equal(t, 1, rep, "7 and 14/2 tie with 3,3; index 1 is lowest")
	assert.Equal(t, []float64{0, 1, 1, 0, 0}, r)
}

func TestMajorityAllDifferent(t *testing.T) {
	var rs []string
	for i := 0; i < 16; i++ {
		rs = append(rs, boxed(fmt.Sprint(i*3+1)))
	}
	r, rep := MajorityResponses(rs)
	assert.Equal(t, 0, rep)
	want := make([]float64, 16)
	want[0] = 1
	assert.Equal(t, want, r)
	assert.InDelta(t, 1.0/16, Share(r), 1e-12)
	assert.False(t, KeepDifficulty(Share(r), DefaultLo, DefaultHi))
}

func TestMajorityUnparseable(t *testing.T) {
	// Responses with nothing extractable equal only themselves.
	r, rep := MajorityResponses([]string{"no idea", "I give up", boxed("4"), "", boxed("2+2")})
	assert.Equal(t, 2, rep)
	assert.Equal(t, []float64{0, 0, 1, 0, 1}, r)

	r, rep = MajorityResponses([]string{"no idea", "nothing", ""})
	assert.Equal(t, 0, rep)
	assert.Equal(t, []float64{1, 0, 0}, r)

	r, rep = Majority(nil)
	assert.Nil(t, r)
	assert.Equal(t, -1, rep)
}

func TestMajorityValueEquivalence(t *testing.T) {
	r, rep := MajorityResponses([]string{
		boxed("\\frac{1}{2}"), boxed("0.5"), boxed("\\dfrac12"), boxed("2"), "The final answer is $\\frac{2}{4}$. I hope it is correct.",
	})
	assert.Equal(t, 0, rep)
	assert.Equal(t, []float64{1, 1, 1, 0, 1}, r)
}

func TestDifficultyBounds(t *testing.T) {
	// With 16 samples: 3/16 dropped, 4/16 kept, 12/16 kept, 13/16 dropped (docs/SERL.md §4).
	for k, keep := range map[int]bool{3: false, 4: true, 12: true, 13: false, 16: false, 1: false} {
		rw := make([]float64, 16)
		for i := 0; i < k; i++ {
			rw[i] = 1
		}
		assert.Equal(t, keep, KeepDifficulty(Share(rw), DefaultLo, DefaultHi), "k=%d", k)
	}
	assert.True(t, KeepDifficulty(0.2, 0.2, 0.8))
	assert.True(t, KeepDifficulty(0.8, 0.2, 0.8))
	assert.Equal(t, 0.0, Share(nil))
}

func TestGroundTruth(t *testing.T) {
	assert.Equal(t, 1.0, GroundTruth(`\frac{\pi}{2}`, "Thus the angle is $\\boxed{\\dfrac{\\pi}{2}}$."))
	assert.Equal(t, 1.0, GroundTruth(`(-3,4)`, "The point is $\\boxed{\\left(-3, 4\\right)}$"))
	assert.Equal(t, 1.0, GroundTruth(`[4,\infty)`, "So $x \\in [4, \\infty)$."))
	assert.Equal(t, 0.0, GroundTruth(`[4,\infty)`, "So $x \\in (4, \\infty)$."))
	assert.Equal(t, 1.0, GroundTruth(`\text{even}`, "The function is $\\boxed{\\text{even}}$."))
	assert.Equal(t, 0.0, GroundTruth(`45`, "The answer is $\\boxed{46}$."))
	assert.Equal(t, 0.0, GroundTruth(`45`, ""))
	// Extraction from the response only: a number in the gold cannot leak.
	assert.Equal(t, 0.0, GroundTruth(`45`, "I cannot solve this."))
}

func TestMajAtK(t *testing.T) {
	ans := ExtractAll([]string{boxed("1"), boxed("2"), boxed("2"), boxed("1"), boxed("1")})
	assert.Equal(t, 0, MajAtK(ans, 1))
	assert.Equal(t, 0, MajAtK(ans, 2))
	assert.Equal(t, 1, MajAtK(ans, 3))
	assert.Equal(t, 0, MajAtK(ans, 5))
	assert.Equal(t, 0, MajAtK(ans, 50), "k is clamped")
	assert.Equal(t, -1, MajAtK(ans, 0))
	g2 := mathans.ParseGold("2")
	assert.True(t, MajAtKCorrect(g2, ans, 3))
	assert.False(t, MajAtKCorrect(g2, ans, 5))
	assert.False(t, MajAtKCorrect(g2, nil, 5))
	assert.InDelta(t, 0.5, MajAtKAccuracy([]mathans.Answer{g2, mathans.ParseGold("1")}, [][]mathans.Answer{ans, ans}, 3), 1e-12)
}

func TestGradeLines(t *testing.T) {
	in := `{"gold": "\\frac{1}{2}", "pred": "The answer is $\\boxed{0.5}$"}
{"gold": "3", "pred": "so 4"}

{"gold": "(1,2)", "pred": "$\\boxed{(1, 2)}$"}
`
	var out bytes.Buffer
	require.NoError(t, GradeLines(strings.NewReader(in), &out))
	assert.Equal(t, "1\n0\n1\n", out.String())

	out.Reset()
	err := GradeLines(strings.NewReader(`{"gold":"1","pred":"1"}`+"\n"+`{"gold": 1,`+"\n"), &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 2")

	err = GradeLines(strings.NewReader(`{"gold":"1"}`+"\n"), &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 1")
}

func sharedData(t testing.TB) string { return testenv.SharedData(t) }

// realResponses builds ~1.5 KB responses from seed500 solutions: the solution
// text padded with reasoning from the following solutions, ending with the
// solution's own box, as a model would write.
func realResponses(t testing.TB, n int) (responses, answers []string) {
	f, err := os.Open(filepath.Join(sharedData(t), "math", "seed500.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var sols, ans []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r struct{ Solution, Answer string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		sols = append(sols, r.Solution)
		ans = append(ans, r.Answer)
	}
	for i := 0; len(responses) < n; i++ {
		s := sols[i%len(sols)]
		box := mathans.Extract(s).Raw
		var b strings.Builder
		for k := 1; b.Len() < 1300; k++ {
			// Earlier reasoning without its boxes.
			b.WriteString(strings.ReplaceAll(sols[(i+k)%len(sols)], `\boxed`, ""))
			b.WriteString("\n\n")
		}
		b.WriteString("Therefore the final answer is $\\boxed{" + box + "}$.")
		responses = append(responses, b.String())
		answers = append(answers, ans[i%len(ans)])
	}
	return responses, answers
}

func TestRealResponsesGradeAgainstTheirLabels(t *testing.T) {
	rs, golds := realResponses(t, 200)
	for i := range rs {
		if strings.Contains(golds[i], "18") && strings.Contains(rs[i], "12, 18") {
			continue // seed label keeps only one of two boxed solutions
		}
		if strings.Contains(golds[i], "150^\\circ") && strings.Contains(rs[i], "30^\\circ, 150") {
			continue
		}
		assert.Equal(t, 1.0, GroundTruth(golds[i], rs[i]), "response %d vs %q", i, golds[i])
	}
}

// BenchmarkMajority16 is one 16-sample majority vote on ~1.5 KB responses
// (extraction included): the budget is < 1 ms on one core.
func BenchmarkMajority16(b *testing.B) {
	rs, _ := realResponses(b, 160)
	groups := make([][]string, 10)
	for g := range groups {
		groups[g] = rs[g*16 : (g+1)*16]
		// Half of each group repeats answers so that pairs really match.
		for j := 8; j < 16; j++ {
			groups[g][j] = rs[g*16+j%3]
		}
	}
	total := 0
	for _, r := range rs {
		total += len(r)
	}
	b.ReportMetric(float64(total)/float64(len(rs)), "bytes/response")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		MajorityResponses(groups[i%len(groups)])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/vote")
}

// BenchmarkMajority16Compare is the 120 comparisons alone, answers extracted.
func BenchmarkMajority16Compare(b *testing.B) {
	rs, _ := realResponses(b, 16)
	for j := 8; j < 16; j++ {
		rs[j] = rs[j%3]
	}
	ans := ExtractAll(rs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Majority(ans)
	}
}
