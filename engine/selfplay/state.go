package selfplay

import (
	"github.com/serl-go/serl/engine/reward"
)

// Problem is one task prompt: a seed, a generated problem or a labelled training problem.
type Problem struct {
	ID    int    `json:"idx"`
	Text  string `json:"prompt"`
	Label string `json:"label,omitempty"` // gt mode only
	Level string `json:"level,omitempty"`
}

// Response is one sampled answer to a problem with its reward.
type Response struct {
	Tokens []int32 `json:"tokens"`
	Text   string  `json:"text"`
	Reward float64 `json:"reward"`
}

// Group is a problem's n responses: the unit of the difficulty filter and of accumulation.
type Group struct {
	Problem   Problem    `json:"problem"`
	Prompt    []int32    `json:"prompt_ids"`
	Responses []Response `json:"responses"`
	Share     float64    `json:"share"` // mean reward: the majority share in serl/maj mode
	Tag       int        `json:"tag"`   // the training step count when it was produced (expiry)
}

// State is everything that defines where a run is: with the weights, the optimizer moments and step
// count (engine/checkpoint) it makes a resumed run continue exactly (docs/SERL.md D14).
type State struct {
	Steps       int       `json:"steps"`         // training steps done
	Ticks       int       `json:"ticks"`         // loop ticks (rollouts and generation rounds)
	NoStepTicks int       `json:"no_step_ticks"` // ticks since the last training step
	GenIdx      int       `json:"gen_idx"`       // next generated problem id
	Pending     []Problem `json:"pending"`
	Keep        []string  `json:"keep"`     // generated problems that passed the difficulty filter (few-shot pool)
	Accepted    []string  `json:"accepted"` // every generated problem accepted so far (ROUGE-L pool, docs/SERL.md D6)
	Accum       []Group   `json:"accum"`
	DataCursor  int       `json:"data_cursor"` // maj/gt: position in the shuffled training set
	DataEpoch   int       `json:"data_epoch"`
	LoopRNG     []byte    `json:"loop_rng"`    // shuffles (training order, data order)
	FewShotRNG  []byte    `json:"fewshot_rng"` // few-shot example draws
	Evaluated   int       `json:"evaluated"`   // iteration boundaries evaluated (0 = before training)
}

// filterResult is what the difficulty filter did with one rollout.
type filterResult struct {
	kept, dropped []Group
}

// difficultyFilter keeps the groups whose share lies in [lo, hi] (both inclusive, docs/SERL.md §4).
func difficultyFilter(groups []Group, lo, hi float64) filterResult {
	var r filterResult
	for _, g := range groups {
		if reward.KeepDifficulty(g.Share, lo, hi) {
			r.kept = append(r.kept, g)
		} else {
			r.dropped = append(r.dropped, g)
		}
	}
	return r
}

// expire removes accumulated groups produced before the last training step (tag < steps), so nothing
// produced by an older policy is trained after an update (docs/SERL.md §1.3).
func (s *State) expire() []Group {
	var expired []Group
	kept := s.Accum[:0]
	for _, g := range s.Accum {
		if g.Tag < s.Steps {
			expired = append(expired, g)
		} else {
			kept = append(kept, g)
		}
	}
	s.Accum = kept
	return expired
}

// takeBatch pops the first n accumulated groups once there are enough for a training step.
func (s *State) takeBatch(n int) ([]Group, bool) {
	if len(s.Accum) < n {
		return nil, false
	}
	batch := append([]Group(nil), s.Accum[:n]...)
	s.Accum = append(s.Accum[:0], s.Accum[n:]...)
	return batch, true
}
