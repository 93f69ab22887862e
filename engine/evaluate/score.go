package evaluate

import (
	"fmt"
	"io"
	"slices"

	"github.com/serl-go/serl/engine/mathans"
	"github.com/serl-go/serl/engine/reward"
)

// Result is one problem's responses and verdicts.
type Result struct {
	Index         int      `json:"index"`
	Level         int      `json:"level"`
	Problem       string   `json:"problem"`
	Gold          string   `json:"gold"`
	Greedy        string   `json:"greedy"`
	GreedyAnswer  string   `json:"greedy_answer"`
	GreedyCorrect bool     `json:"greedy_correct"`
	Samples       []string `json:"samples,omitempty"`
	SampleAnswers []string `json:"sample_answers,omitempty"`
	MajAnswer     string   `json:"maj_answer,omitempty"`
	MajCorrect    bool     `json:"maj_correct"`
}

// Score is the accuracy of one group of problems. Pass1 and Maj are fractions of N (every problem
// counts, docs/SERL.md D20).
type Score struct {
	N             int     `json:"n"`
	Pass1Correct  int     `json:"pass1_correct"`
	Pass1         float64 `json:"pass@1"`
	MajCorrect    int     `json:"maj_correct"`
	Maj           float64 `json:"maj@k"`
	NoAnswer      int     `json:"greedy_no_answer"` // greedy responses with nothing extractable
	MeanRespChars float64 `json:"greedy_mean_chars"`
}

// LevelScore is the score of the problems of one level.
type LevelScore struct {
	Level int `json:"level"`
	Score
}

// Report is an evaluation's outcome.
type Report struct {
	K       int          `json:"k"` // samples per problem for maj@K (0: pass@1 only)
	Overall Score        `json:"overall"`
	Levels  []LevelScore `json:"levels"` // ascending; level 0 collects problems without one
}

// Grade scores responses: greedy[i] is problem i's greedy response and samples[i] its sampled
// responses (nil, or K each, for maj@K with the training reward's representative rule, docs/SERL.md D21).
// Answers are extracted from the responses only (docs/SERL.md D7).
func Grade(problems []Problem, greedy []string, samples [][]string, k int) (Report, []Result, error) {
	if len(greedy) != len(problems) {
		return Report{}, nil, fmt.Errorf("evaluate: %d greedy responses for %d problems", len(greedy), len(problems))
	}
	if k > 0 && len(samples) != len(problems) {
		return Report{}, nil, fmt.Errorf("evaluate: sampled responses for %d of %d problems", len(samples), len(problems))
	}
	results := make([]Result, len(problems))
	for i, p := range problems {
		gold := p.Gold()
		r := Result{Index: i, Level: p.Level, Problem: p.Problem, Gold: gold.Raw, Greedy: greedy[i]}
		a := mathans.Extract(greedy[i])
		r.GreedyAnswer = a.Raw
		r.GreedyCorrect = mathans.Same(gold, a)
		if k > 0 {
			if len(samples[i]) != k {
				return Report{}, nil, fmt.Errorf("evaluate: problem %d has %d samples, want %d", i, len(samples[i]), k)
			}
			answers := reward.ExtractAll(samples[i])
			r.Samples = samples[i]
			r.SampleAnswers = make([]string, k)
			for j, a := range answers {
				r.SampleAnswers[j] = a.Raw
			}
			if rep := reward.MajAtK(answers, k); rep >= 0 {
				r.MajAnswer = answers[rep].Raw
			}
			r.MajCorrect = reward.MajAtKCorrect(gold, answers, k)
		}
		results[i] = r
	}
	return Summarize(results, k), results, nil
}

// Summarize aggregates per-problem results into per-level and overall scores.
func Summarize(results []Result, k int) Report {
	rep := Report{K: k}
	byLevel := map[int]*Score{}
	add := func(s *Score, r Result) {
		s.N++
		if r.GreedyCorrect {
			s.Pass1Correct++
		}
		if r.MajCorrect {
			s.MajCorrect++
		}
		if r.GreedyAnswer == "" {
			s.NoAnswer++
		}
		s.MeanRespChars += float64(len(r.Greedy))
	}
	for _, r := range results {
		add(&rep.Overall, r)
		s := byLevel[r.Level]
		if s == nil {
			s = &Score{}
			byLevel[r.Level] = s
		}
		add(s, r)
	}
	finish := func(s *Score) {
		if s.N > 0 {
			s.Pass1 = float64(s.Pass1Correct) / float64(s.N)
			s.Maj = float64(s.MajCorrect) / float64(s.N)
			s.MeanRespChars /= float64(s.N)
		}
	}
	finish(&rep.Overall)
	levels := make([]int, 0, len(byLevel))
	for l := range byLevel {
		levels = append(levels, l)
	}
	slices.Sort(levels)
	for _, l := range levels {
		s := byLevel[l]
		finish(s)
		rep.Levels = append(rep.Levels, LevelScore{Level: l, Score: *s})
	}
	return rep
}

// WriteTable prints the report as a table, one row per level and one overall.
func (r Report) WriteTable(w io.Writer) error {
	head := fmt.Sprintf("%-8s %6s %8s", "level", "n", "pass@1")
	if r.K > 0 {
		head += fmt.Sprintf(" %8s", fmt.Sprintf("maj@%d", r.K))
	}
	head += fmt.Sprintf(" %10s\n", "no-answer")
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	row := func(name string, s Score) error {
		line := fmt.Sprintf("%-8s %6d %7.1f%%", name, s.N, 100*s.Pass1)
		if r.K > 0 {
			line += fmt.Sprintf(" %7.1f%%", 100*s.Maj)
		}
		line += fmt.Sprintf(" %10d\n", s.NoAnswer)
		_, err := io.WriteString(w, line)
		return err
	}
	for _, l := range r.Levels {
		name := fmt.Sprint(l.Level)
		if l.Level == 0 {
			name = "?"
		}
		if err := row(name, l.Score); err != nil {
			return err
		}
	}
	return row("all", r.Overall)
}
