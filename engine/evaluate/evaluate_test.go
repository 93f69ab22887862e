package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfinstruct"
)

func TestReadJSONL(t *testing.T) {
	in := `{"problem": "1+1?", "answer": "\\boxed{2}", "level": 2}

{"question": "2+2?", "answer": 4}
{"problem": "3+3?", "solution": "So it is $\\boxed{6}$.", "level": "Level 5"}
{"problem": "x?", "answer": "x", "level": "Level ?"}
`
	ps, err := ReadJSONL(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, ps, 4)
	assert.Equal(t, Problem{Problem: "1+1?", Answer: `\boxed{2}`, Level: 2}, ps[0])
	assert.Equal(t, Problem{Problem: "2+2?", Answer: "4"}, ps[1])
	assert.Equal(t, 5, ps[2].Level)
	assert.Equal(t, "6", ps[2].Gold().Raw, "gold from the solution's box when there is no answer")
	assert.Equal(t, 0, ps[3].Level)

	for _, bad := range []string{
		`{"answer": "1"}`,                      // no text
		`{"problem": "p"}`,                     // no gold
		`{"problem": "p", "solution": "none"}`, // no gold in the solution either
		`{"problem": "p", "answer": "1", "level": "hard"}`,
		`{"problem": "p", "answer": [1]}`,
		`{"problem": `,
	} {
		_, err := ReadJSONL(strings.NewReader("\n" + bad + "\n"))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "line 2", bad)
	}
}

func TestGradeCountsEveryProblem(t *testing.T) {
	problems := []Problem{
		{Problem: "a", Answer: "3", Level: 1},
		{Problem: "b", Answer: `\boxed{\frac{1}{2}}`, Level: 1},
		{Problem: "c", Answer: "10", Level: 2},
		{Problem: "d", Solution: `hence \boxed{7}`, Level: 2},
		{Problem: "e", Answer: "5", Level: 2},
	}
	greedy := []string{
		`so \boxed{3}`,            // right
		`it is 0.5`,               // right by value (last number)
		`I do not know`,           // nothing extractable: wrong, still counted
		`\boxed{8}`,               // wrong
		`the answer is \boxed{5}`, // right
	}
	samples := [][]string{
		{`\boxed{3}`, `\boxed{4}`, `\boxed{4}`},              // majority 4: wrong
		{`\boxed{1/2}`, `\boxed{0.5}`, `\boxed{2}`},          // 1/2 ≡ 0.5: right
		{`\boxed{10}`, `no idea`, `nothing`},                 // 10 once vs no answers: the only valid one wins
		{`\boxed{6}`, `\boxed{7}`, `\boxed{8}`},              // all differ: tie to the lowest index, wrong
		{`\boxed{5}`, `\boxed{5.0}`, `\boxed{\frac{10}{2}}`}, // right
	}
	rep, res, err := Grade(problems, greedy, samples, 3)
	require.NoError(t, err)
	require.Len(t, res, 5)
	pass := []bool{res[0].GreedyCorrect, res[1].GreedyCorrect, res[2].GreedyCorrect, res[3].GreedyCorrect}
	assert.Equal(t, []bool{true, true, false, false}, pass)
	maj := []bool{res[0].MajCorrect, res[1].MajCorrect, res[2].MajCorrect, res[3].MajCorrect, res[4].MajCorrect}
	assert.Equal(t, []bool{false, true, true, false, true}, maj)
	assert.Equal(t, "4", res[0].MajAnswer)
	assert.Equal(t, "6", res[3].MajAnswer)
	assert.Equal(t, "", res[2].GreedyAnswer)

	assert.Equal(t, 5, rep.Overall.N)
	assert.Equal(t, 3, rep.Overall.MajCorrect)
	assert.InDelta(t, 0.6, rep.Overall.Maj, 1e-12)
	require.Len(t, rep.Levels, 2)
	assert.Equal(t, 1, rep.Levels[0].Level)
	assert.Equal(t, 2, rep.Levels[0].N)
	assert.InDelta(t, 1.0, rep.Levels[0].Pass1, 1e-12)
	assert.InDelta(t, 0.5, rep.Levels[0].Maj, 1e-12)
	assert.Equal(t, 3, rep.Levels[1].N)
	assert.Equal(t, 1, rep.Levels[1].NoAnswer)
	assert.Equal(t, 1, rep.Levels[1].Pass1Correct)
	assert.InDelta(t, 1.0/3, rep.Levels[1].Pass1, 1e-12)
	assert.InDelta(t, 2.0/3, rep.Levels[1].Maj, 1e-12)
	assert.Equal(t, rep.Levels[0].Pass1Correct+rep.Levels[1].Pass1Correct, rep.Overall.Pass1Correct)

	var buf bytes.Buffer
	require.NoError(t, rep.WriteTable(&buf))
	assert.Contains(t, buf.String(), "maj@3")
	assert.Contains(t, buf.String(), "60.0%")
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"maj@k":0.6`)

	_, _, err = Grade(problems, greedy[:4], samples, 3)
	require.Error(t, err)
	_, _, err = Grade(problems, greedy, samples, 4)
	require.Error(t, err, "samples per problem must be K")
	rep, _, err = Grade(problems, greedy, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, 0, rep.Overall.MajCorrect)
	buf.Reset()
	require.NoError(t, rep.WriteTable(&buf))
	assert.NotContains(t, buf.String(), "maj@")
}

func fixture(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(testenv.CPU(t), filepath.Join("..", "model", "testdata", "qwen2_f32"))
	require.NoError(t, err)
	t.Cleanup(m.Free)
	return m
}

// byteCodec maps bytes to ids 3.. so that BOS (1) and EOS (2) never appear in text.
type byteCodec struct{}

func (byteCodec) prompt(s string) ([]int32, error) {
	ids := make([]int32, len(s))
	for i := range len(s) {
		ids[i] = 3 + int32(s[i])%253
	}
	return ids, nil
}

func (byteCodec) Decode(ids []int32, skip bool) (string, error) {
	var b strings.Builder
	for _, id := range ids {
		if id < 3 {
			continue
		}
		b.WriteByte(byte('a' + (id-3)%26))
	}
	return b.String(), nil
}

func TestGenerateIndependentOfChunking(t *testing.T) {
	m := fixture(t)
	var problems []Problem
	for _, s := range []string{"what is 2+2?", "x", "a longer problem text here", "seven", "q5", "the sixth one"} {
		problems = append(problems, Problem{Problem: s, Answer: "1"})
	}
	run := func(chunk, batch int) ([]string, [][]string, *Evaluator) {
		e := &Evaluator{Model: m, Prompt: byteCodec{}.prompt, Decoder: byteCodec{},
			Options: Options{K: 3, MaxNewTokens: 12, Seed: 7, Chunk: chunk, MaxBatch: batch}}
		var calls []int
		g, s, err := e.Generate(context.Background(), problems, func(done, total int) {
			assert.Equal(t, len(problems), total)
			calls = append(calls, done)
		})
		require.NoError(t, err)
		assert.Equal(t, len(problems), calls[len(calls)-1])
		return g, s, e
	}
	g1, s1, e1 := run(1, 4)
	g2, s2, e2 := run(0, 64)
	assert.Equal(t, g1, g2)
	assert.Equal(t, s1, s2)
	for i := range problems {
		require.Len(t, s1[i], 3)
		assert.NotEmpty(t, g1[i])
	}
	// One prefill per request (greedy and sampled), however many samples.
	assert.Equal(t, 2*len(problems), e1.Stats.Prefills)
	assert.Equal(t, 2*len(problems), e2.Stats.Prefills)
	// Different problems draw from different streams.
	assert.NotEqual(t, problemSeed(7, 0), problemSeed(7, 1))

	e := &Evaluator{Model: m, Prompt: byteCodec{}.prompt, Decoder: byteCodec{}, Options: Options{MaxNewTokens: 600}}
	_, _, err := e.Generate(context.Background(), problems, nil)
	require.ErrorContains(t, err, "context")
	e.Options.FitContext = true
	g, _, err := e.Generate(context.Background(), problems[:1], nil)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(g[0]), 512-len(problems[0].Problem))
}

func TestScoreInstructions(t *testing.T) {
	seeds := []string{"Ann has 4 pens and buys 3 more pens. How many pens does Ann have?"}
	completions := []string{
		"9. Bob has 7 cups and gives away 2 cups. How many cups are left?\n10. Draw a graph of the cups Bob has.\n" +
			"11. Ann has 4 pens and buys 3 more pens. How many pens does Ann have?",
		"9. Bob has 7 cups and gives away 2 cups. How many cups are left?\n10. Eve reads 12 pages a day for 3 days. How many pages?",
		"",
	}
	solve := func(p string) bool { return strings.HasPrefix(p, "Bob") }
	rep := ScoreInstructions(completions, seeds, solve)
	assert.Equal(t, 3, rep.Prompts)
	assert.Equal(t, 5, rep.Candidates)
	// Accepted: Bob (first time) and Eve; rejected: the graph (keyword), the seed copy and the second
	// Bob (ROUGE-L against the pool, which includes what was accepted before).
	assert.Equal(t, 2, rep.Accepted)
	assert.Equal(t, map[string]int{"Accepted": 2, "Keyword": 1, "Similar": 2}, rep.Reasons)
	assert.InDelta(t, 0.4, rep.AcceptRate, 1e-12)
	assert.Equal(t, 1, rep.Solvable)
	assert.InDelta(t, 0.5, rep.SolvableRate, 1e-12)

	m := fixture(t)
	for i := range 8 {
		seeds = append(seeds, strings.Repeat("x", i+1)+" y z w")
	}
	var users []string
	r, err := ProbeSelfInstruct(context.Background(), m, byteCodec{}, func(p selfinstruct.Prompt) ([]int32, error) {
		users = append(users, p.User)
		return byteCodec{}.prompt(p.User[len(p.User)-40:])
	}, seeds, InstructOptions{Prompts: 3, MaxNewTokens: 10, Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, 3, r.Prompts)
	require.Len(t, users, 3)
	assert.True(t, strings.HasSuffix(users[0], "\n9."), users[0])
	_, err = ProbeSelfInstruct(context.Background(), m, byteCodec{}, nil, nil, InstructOptions{Prompts: 1, MaxNewTokens: 1})
	require.Error(t, err)
}

// Cancelling an evaluation stops it with context.Canceled instead of running to the end: here from the
// progress callback after the first of six chunks, and before any work from an already cancelled ctx.
// Nothing is empty either: no problems is an error, not a score.
func TestEvaluateCancelAndEmpty(t *testing.T) {
	m := fixture(t)
	var problems []Problem
	for i := range 6 {
		problems = append(problems, Problem{Problem: strings.Repeat("q", i+1), Answer: "1"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Evaluator{Model: m, Prompt: byteCodec{}.prompt, Decoder: byteCodec{}, Options: Options{K: 2, MaxNewTokens: 12, Chunk: 1}}
	var calls []int
	_, _, err := e.Run(ctx, problems, func(done, total int) {
		calls = append(calls, done)
		cancel()
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []int{1}, calls, "no chunk after the cancel")

	_, err = ProbeSelfInstruct(ctx, m, byteCodec{}, func(p selfinstruct.Prompt) ([]int32, error) {
		return byteCodec{}.prompt(p.User[len(p.User)-20:])
	}, strings.Fields("a b c d e f g h"), InstructOptions{Prompts: 2, MaxNewTokens: 10})
	require.ErrorIs(t, err, context.Canceled)

	_, _, err = e.Run(context.Background(), nil, nil)
	require.ErrorContains(t, err, "no problems")
	p := filepath.Join(t.TempDir(), "empty.jsonl")
	require.NoError(t, os.WriteFile(p, []byte("\n"), 0o644))
	_, err = ReadFile(p)
	require.ErrorContains(t, err, p+": no problems")
}
