package evaluate

import (
	"context"
	"fmt"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfinstruct"
)

// Self-instruction sampling settings of SeRL (docs/SERL.md §2.3).
const (
	InstructTemperature = 0.8
	InstructTopP        = 0.95
	InstructPresence    = 2.0
)

// InstructOptions sets a self-instruction probe.
type InstructOptions struct {
	Prompts      int // few-shot prompts, one completion each
	MaxNewTokens int
	Seed         uint64
	MaxBatch     int
	StopIDs      []int32
	// Solve, when set, is the task's checker: it says whether an accepted problem is well posed.
	Solve func(problem string) bool
}

// InstructReport is what self-instruction produced: how many parsed candidates passed the rule and
// ROUGE-L filters, and how many accepted problems the task's checker can solve.
type InstructReport struct {
	Prompts      int            `json:"prompts"`
	Candidates   int            `json:"candidates"`
	Accepted     int            `json:"accepted"`
	AcceptRate   float64        `json:"accept_rate"` // accepted / candidates
	Solvable     int            `json:"solvable"`
	SolvableRate float64        `json:"solvable_rate"` // solvable / accepted
	Reasons      map[string]int `json:"reasons"`
	Examples     []string       `json:"examples,omitempty"` // a few accepted problems
}

// ProbeSelfInstruct runs SeRL's self-instruction step once over seeds: few-shot prompts built as
// official (8 examples from the seeds), rendered by render (the chat template), sampled at
// temperature 0.8 / top-p 0.95 / presence penalty 2.0, parsed and filtered against a pool of the
// seeds plus what was accepted so far. A done ctx stops it at the next decoding step with ctx's error.
func ProbeSelfInstruct(ctx context.Context, m *model.Model, dec generate.Detokenizer, render func(selfinstruct.Prompt) ([]int32, error),
	seeds []string, o InstructOptions) (InstructReport, error) {
	if o.Prompts < 1 || o.MaxNewTokens < 1 || len(seeds) == 0 {
		return InstructReport{}, fmt.Errorf("evaluate: self-instruction probe needs prompts, tokens and seeds")
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	b := selfinstruct.NewBuilder()
	rng := selfinstruct.NewRNG(o.Seed)
	budget := m.Config.MaxPositions - o.MaxNewTokens
	reqs := make([]generate.Request, o.Prompts)
	longest := 1
	for i := range reqs {
		var ids []int32
		var rerr error
		_, err := b.Build(rng, seeds, nil, func(p selfinstruct.Prompt) bool {
			ids, rerr = render(p)
			return rerr == nil && len(ids) <= budget
		})
		if rerr != nil {
			return InstructReport{}, rerr
		}
		if err != nil {
			return InstructReport{}, err
		}
		longest = max(longest, len(ids))
		reqs[i] = generate.Request{Prompt: ids, N: 1, Params: generate.Params{MaxNewTokens: o.MaxNewTokens, MinNewTokens: 1,
			Temperature: InstructTemperature, TopP: InstructTopP, PresencePenalty: InstructPresence,
			StopIDs: o.StopIDs, Seed: problemSeed(o.Seed, i)}}
	}
	eng, err := newEngine(m, longest, o.MaxNewTokens, o.MaxBatch)
	if err != nil {
		return InstructReport{}, err
	}
	defer eng.Free()
	out, err := eng.GenerateContext(ctx, reqs, dec, nil)
	if err != nil {
		return InstructReport{}, err
	}
	completions := make([]string, len(out))
	for i, r := range out {
		completions[i] = r[0].Text
	}
	return ScoreInstructions(completions, seeds, o.Solve), nil
}

// ScoreInstructions parses and filters completions as SeRL does (rule filters, then ROUGE-L against
// the seeds and everything accepted before) and counts the solvable accepted problems.
func ScoreInstructions(completions, seeds []string, solve func(string) bool) InstructReport {
	pool := selfinstruct.NewPool()
	for _, s := range seeds {
		pool.Add(s)
	}
	f := selfinstruct.NewFilter(pool)
	rep := InstructReport{Prompts: len(completions), Reasons: map[string]int{}}
	var counts selfinstruct.Counts
	for _, c := range completions {
		res := f.Process(c)
		counts.Add(res.Counts)
		rep.Candidates += len(res.Candidates)
		for _, a := range res.Accepted {
			rep.Accepted++
			if solve != nil && solve(a) {
				rep.Solvable++
			}
			if len(rep.Examples) < 5 {
				rep.Examples = append(rep.Examples, a)
			}
		}
	}
	for r, n := range counts {
		if n > 0 {
			rep.Reasons[selfinstruct.Reason(r).String()] = n
		}
	}
	if rep.Candidates > 0 {
		rep.AcceptRate = float64(rep.Accepted) / float64(rep.Candidates)
	}
	if rep.Accepted > 0 {
		rep.SolvableRate = float64(rep.Solvable) / float64(rep.Accepted)
	}
	return rep
}
