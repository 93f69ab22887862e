package selfplay

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/internal/crashpoint"
)

// StepMetrics is one line of metrics.jsonl: what one training step did, and what led up to it.
type StepMetrics struct {
	Step      int     `json:"step"`
	Iteration int     `json:"iteration"`
	Ticks     int     `json:"ticks"`
	Time      string  `json:"time"`
	LR        float64 `json:"lr"`

	RewardMean    float64        `json:"reward_mean"`    // over the trained responses
	ShareMean     float64        `json:"share_mean"`     // mean majority share of every rolled-out group
	GroupsKept    int            `json:"groups_kept"`    // passed the difficulty filter
	GroupsDropped int            `json:"groups_dropped"` // failed it
	GroupsExpired int            `json:"groups_expired"` // kept but produced before an update
	Generated     int            `json:"problems_generated"`
	Accepted      int            `json:"problems_accepted"`
	Rejected      map[string]int `json:"problems_rejected"` // by reason

	Loss     float64 `json:"loss"`
	KL       float64 `json:"kl"`
	ClipFrac float64 `json:"clip_frac"`
	GradNorm float64 `json:"grad_norm"` // mean over the step's optimizer steps, before clipping
	AdvStd   float64 `json:"adv_std"`

	GenTokens    int     `json:"gen_tokens"`
	TokensPerSec float64 `json:"gen_tokens_per_s"`
	GenSec       float64 `json:"time_generation_s"`
	RewardSec    float64 `json:"time_reward_s"`
	TrainSec     float64 `json:"time_train_s"`

	DeviceBytes     int64  `json:"device_bytes"`      // live native allocations
	DevicePeakBytes int64  `json:"device_peak_bytes"` // their peak so far
	GoHeapBytes     uint64 `json:"go_heap_bytes"`
}

// Deterministic is m without the fields that depend on the machine and the moment (times, rates,
// memory): what an interrupted and resumed run must reproduce exactly.
func (m StepMetrics) Deterministic() StepMetrics {
	m.Time, m.GenSec, m.RewardSec, m.TrainSec, m.TokensPerSec = "", 0, 0, 0, 0
	m.DeviceBytes, m.DevicePeakBytes, m.GoHeapBytes = 0, 0, 0
	return m
}

// trainStep runs one RL update on a batch of RolloutBatch groups: log-probs of the policy (the
// training forward pass, docs/SERL.md D18) and of the reference, advantages over exactly these samples
// (docs/SERL.md D4), then optimizer steps of TrainBatch sequences in a shuffled order.
func (r *Runner) trainStep(ctx context.Context, batch []Group) error {
	t0 := time.Now()
	var samples []*rl.Sample
	for gi, g := range batch {
		for _, resp := range g.Responses {
			ids := make([]int32, 0, len(g.Prompt)+len(resp.Tokens))
			ids = append(append(ids, g.Prompt...), resp.Tokens...)
			samples = append(samples, &rl.Sample{Group: gi, IDs: ids, PromptLen: len(g.Prompt), Reward: resp.Reward})
		}
	}
	old, ref, err := r.scoreActions(samples)
	if err != nil {
		return err
	}
	var rewardSum float64
	for i, s := range samples {
		s.LogPOld, s.LogPRef = old[i], ref[i]
		rewardSum += s.Reward
	}
	adv, err := r.rlw.Advantages(r.rlc, samples)
	if err != nil {
		return err
	}
	r.loopRNG.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	d := r.in.Policy.Device()
	m := StepMetrics{Step: r.state.Steps + 1, RewardMean: rewardSum / float64(len(samples)), AdvStd: adv.AdvStd}
	var clipTokens, tokens int
	nOpt := 0
	for lo := 0; lo < len(samples); lo += r.cfg.TrainBatch {
		if err := r.cancelled(ctx); err != nil {
			return err
		}
		chunk := samples[lo:min(lo+r.cfg.TrainBatch, len(samples))]
		if err := d.Zero(r.grads.Data); err != nil {
			return err
		}
		// This rank's share of the optimizer step; the gradients of every share are summed before
		// clipping and AdamW, which then run alike on every rank.
		clo, chi := r.comm.Split(len(chunk))
		var share rl.ShareSums
		if chi > clo {
			if share, err = r.rlw.BackwardShare(r.rlc, r.in.Policy, r.grads, chunk[clo:chi], len(chunk)); err != nil {
				return err
			}
		}
		if err := r.comm.AllReduceSum(r.grads.Data); err != nil {
			return fmt.Errorf("selfplay: gradients of step %d: %w", r.state.Steps+1, err)
		}
		shares, err := gather(r.comm, "loss statistics", []rl.ShareSums{share})
		if err != nil {
			return err
		}
		var sum rl.ShareSums
		for _, s := range shares {
			sum.Add(s)
		}
		st := sum.Stats()
		params, _ := r.in.Policy.Trainable()
		os, err := r.opt.Step(params, r.grads)
		if err != nil {
			return err
		}
		m.Loss += st.Loss
		m.KL += st.KL
		m.GradNorm += os.GradNorm
		m.LR = os.LR
		clipTokens += int(st.ClipFrac*float64(st.Tokens) + 0.5)
		tokens += st.Tokens
		nOpt++
	}
	m.Loss /= float64(nOpt)
	m.GradNorm /= float64(nOpt)
	if tokens > 0 {
		m.KL /= float64(tokens)
		m.ClipFrac = float64(clipTokens) / float64(tokens)
	}
	r.state.Steps++
	r.state.Pending = nil // docs/SERL.md D13: ungenerated leftovers are discarded after each step
	m.TrainSec = time.Since(t0).Seconds()
	r.finishMetrics(&m)
	return nil
}

// scoreActions returns the per-token log-probs of every sample's actions under the policy and the
// reference; each rank scores its share and the shares are gathered.
func (r *Runner) scoreActions(samples []*rl.Sample) (old, ref [][]float32, err error) {
	lo, hi := r.comm.Split(len(samples))
	old = make([][]float32, hi-lo)
	ref = make([][]float32, hi-lo)
	if hi > lo {
		if err := r.rlw.ScoreActions(r.in.Policy, samples[lo:hi], old); err != nil {
			return nil, nil, err
		}
		if err := r.rlw.ScoreActions(r.in.Reference, samples[lo:hi], ref); err != nil {
			return nil, nil, err
		}
	}
	if old, err = gather(r.comm, "policy log-probs", old); err != nil {
		return nil, nil, err
	}
	if ref, err = gather(r.comm, "reference log-probs", ref); err != nil {
		return nil, nil, err
	}
	return old, ref, nil
}

// finishMetrics adds the counters of the ticks that led to this step, writes the metrics line and
// resets the counters.
func (r *Runner) finishMetrics(m *StepMetrics) {
	c := &r.counters
	m.Iteration = (r.state.Steps-1)/r.cfg.StepsPerIteration() + 1
	m.Ticks = r.state.Ticks
	m.Time = time.Now().UTC().Format(time.RFC3339)
	for _, s := range c.shares {
		m.ShareMean += s
	}
	if len(c.shares) > 0 {
		m.ShareMean /= float64(len(c.shares))
	}
	m.GroupsKept, m.GroupsDropped, m.GroupsExpired = c.kept, c.dropped, c.expire
	m.Generated, m.Accepted = c.generated, c.accepted
	m.Rejected = map[string]int{}
	for reason, n := range c.rejected {
		if n > 0 && selfinstruct.Reason(reason) != selfinstruct.Accepted {
			m.Rejected[fmt.Sprint(reasonName(reason))] = n
		}
	}
	m.GenTokens = c.genTokens
	m.GenSec, m.RewardSec = c.genTime.Seconds(), c.rewardTime.Seconds()
	if m.GenSec > 0 {
		m.TokensPerSec = float64(c.genTokens) / m.GenSec
	}
	m.DeviceBytes, m.DevicePeakBytes = r.in.Policy.Device().MemoryInUse()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.GoHeapBytes = ms.HeapAlloc
	r.counters = tickCounters{}
	r.dir.appendMetrics(m)
	crashpoint.Here("selfplay.metrics")
	if r.onStep != nil {
		r.onStep(*m)
	}
}
