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
	KL       float64 `json:"kl"` // 0 under --kl 0, which scores no reference
	ClipFrac float64 `json:"clip_frac"`
	GradNorm float64 `json:"grad_norm"` // mean over the step's optimizer steps, before clipping
	AdvStd   float64 `json:"adv_std"`

	GenTokens    int     `json:"gen_tokens"`
	TokensPerSec float64 `json:"gen_tokens_per_s"`
	GenSec       float64 `json:"time_generation_s"`
	RewardSec    float64 `json:"time_reward_s"`
	TrainSec     float64 `json:"time_train_s"`

	// Where the step's time went, finer (rank 0's clock; docs/RUNDIR.md, "Where a step's time goes"):
	// time_generation_s = time_instruct_s + time_rollout_s, time_train_s holds time_score_s and
	// time_update_s, and time_step_s holds every phase above, so what it leaves over is the loop's own
	// work (prompts, the difficulty filter, records).
	InstructTokens int     `json:"instruct_tokens"`   // of gen_tokens, the self-instruction completions'
	TrainTokens    int     `json:"train_tokens"`      // tokens of the trained sequences, prompts included
	InstructSec    float64 `json:"time_instruct_s"`   // decoding self-instruction completions
	FilterSec      float64 `json:"time_filter_s"`     // parsing and filtering them (rules, ROUGE-L)
	RolloutSec     float64 `json:"time_rollout_s"`    // sampling the responses to the problems
	ScoreSec       float64 `json:"time_score_s"`      // log-probs of the policy and the reference
	UpdateSec      float64 `json:"time_update_s"`     // forward/backward, gradient all-reduce, AdamW
	StepSec        float64 `json:"time_step_s"`       // since the last checkpoint (or the first evaluation) was done
	CheckpointSec  float64 `json:"time_checkpoint_s"` // writing the checkpoint the step started from (0: resumed, or none: checkpoint_every)

	DeviceBytes     int64  `json:"device_bytes"`      // live native allocations
	DevicePeakBytes int64  `json:"device_peak_bytes"` // their peak so far
	GoHeapBytes     uint64 `json:"go_heap_bytes"`
}

// Deterministic is m without the fields that depend on the machine and the moment (times, rates,
// memory): what an interrupted and resumed run must reproduce exactly.
func (m StepMetrics) Deterministic() StepMetrics {
	m.Time, m.GenSec, m.RewardSec, m.TrainSec, m.TokensPerSec = "", 0, 0, 0, 0
	m.InstructSec, m.FilterSec, m.RolloutSec, m.ScoreSec, m.UpdateSec, m.StepSec, m.CheckpointSec = 0, 0, 0, 0, 0, 0, 0
	m.DeviceBytes, m.DevicePeakBytes, m.GoHeapBytes = 0, 0, 0
	return m
}

// trainStep runs one RL update on a batch of RolloutBatch groups (docs/SERL.md D4, D18): the samples
// are shuffled into their optimizer steps of TrainBatch sequences first, so that each rank scores —
// log-probs of the policy (the training forward pass) and of the reference — exactly the samples it
// will train on, its share of every optimizer step, and their per-token data never leaves its device.
// Rewards are reshaped over all the groups on every rank (host scalars every rank has), advantages are
// whitened over exactly these samples with statistics combined across the ranks, and each optimizer
// step's gradients and loss sums are summed over the ranks.
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
	var rewardSum float64
	trainTokens := 0
	for _, s := range samples {
		rewardSum += s.Reward
		trainTokens += len(s.IDs)
	}
	if err := r.rlw.Reshape(r.rlc, samples); err != nil {
		return err
	}
	r.loopRNG.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	// This rank's share of every optimizer step, back to back: chunk k's share is local[at[k]:at[k+1]].
	var local []*rl.Sample
	at := []int{0}
	for lo := 0; lo < len(samples); lo += r.cfg.TrainBatch {
		chunk := samples[lo:min(lo+r.cfg.TrainBatch, len(samples))]
		clo, chi := r.comm.Split(len(chunk))
		local = append(local, chunk[clo:chi]...)
		at = append(at, len(local))
	}
	d := r.in.Policy.Device()
	defer d.SetProfilePhase(d.SetProfilePhase("score")) // --op-profile's phases: StepMetrics' time_score_s, time_update_s
	tScore := time.Now()
	ref := r.in.Reference
	if r.cfg.KLCoef == 0 { // no KL term: the reference's log-probs would be multiplied by 0
		ref = nil
	}
	if err := r.rlw.Score(r.in.Policy, ref, local); err != nil {
		return err
	}
	if err := d.Sync(); err != nil { // a GPU scores asynchronously: its time is the scoring's, not the next phase's
		return err
	}
	scoreSec := time.Since(tScore).Seconds()
	adv, err := r.rlw.Advantages(r.rlc, r.combineMoments)
	if err != nil {
		return err
	}
	m := StepMetrics{Step: r.state.Steps + 1, RewardMean: rewardSum / float64(len(samples)), AdvStd: adv.AdvStd,
		TrainTokens: trainTokens, ScoreSec: scoreSec}
	d.SetProfilePhase("update")
	tUpdate := time.Now()
	var clipTokens, tokens int
	nOpt := 0
	for k, lo := 0, 0; lo < len(samples); k, lo = k+1, lo+r.cfg.TrainBatch {
		if err := r.cancelled(ctx); err != nil {
			return err
		}
		n := min(r.cfg.TrainBatch, len(samples)-lo)
		if err := d.Zero(r.grads.Data); err != nil {
			return err
		}
		// The gradients of every share are summed before clipping and AdamW, which then run alike on
		// every rank.
		var share rl.ShareSums
		if at[k+1] > at[k] {
			if share, err = r.rlw.BackwardShare(r.rlc, r.in.Policy, r.grads, at[k], at[k+1], n); err != nil {
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
		r.unsaved = nil // the weights move past the last step: only a kill's resume redoes it now
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
	m.UpdateSec = time.Since(tUpdate).Seconds() // ends on a host value (the gradient norm): the device is done
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

// combineMoments is the advantages' rl.Reducer: every rank's moments of its returns, gathered and
// combined in rank order, so that each whitens with the whole step's statistics.
func (r *Runner) combineMoments(local rl.Moments) (rl.Moments, error) {
	if r.comm.Size() == 1 {
		return local, nil
	}
	parts, err := gather(r.comm, "return statistics", []rl.Moments{local})
	if err != nil {
		return rl.Moments{}, err
	}
	return rl.CombineMoments(parts), nil
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
	m.GenTokens, m.InstructTokens = c.genTokens, c.instrTokens
	m.GenSec, m.RewardSec = (c.instrTime + c.rolloutTime).Seconds(), c.rewardTime.Seconds()
	m.InstructSec, m.FilterSec, m.RolloutSec = c.instrTime.Seconds(), c.filterTime.Seconds(), c.rolloutTime.Seconds()
	if !r.stepStart.IsZero() {
		m.StepSec = time.Since(r.stepStart).Seconds()
	}
	m.CheckpointSec = r.lastCheckpoint.Seconds()
	r.lastCheckpoint = 0
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
