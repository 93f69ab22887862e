package selfplay

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/serl-go/serl/engine/dist"
)

// Data parallelism (docs/SERL.md, "Beyond one process"): every rank holds the whole loop state and
// replays the same decisions, while the expensive work of each phase — self-instruction completions,
// rollouts and their rewards, log-probs, each optimizer step's gradient — is split in contiguous
// shares (dist.Comm.Split) and gathered back in rank order, so that the gathered result is the list
// one process would have made. Sampling draws from a stream keyed by (seed, tick, request), never from
// what was decoded with it, so a split changes no token. Rank 0 alone writes the run directory.
//
// Rank 0 writes each step's checkpoint while the other ranks already decode the next self-instruction
// round (roundShare): they learn the checkpoint's outcome from that round's gather (gatherPhase), as
// they learn of an interrupt on any rank from every phase's gather, rather than meeting in
// collectives of their own.

// comm is the runner's process group (one process when the inputs name none).
func (in Inputs) comm() *dist.Comm {
	if in.Comm == nil {
		return dist.Single()
	}
	return in.Comm
}

// lead reports whether this process writes the run directory.
func (r *Runner) lead() bool { return r.comm.Rank() == 0 }

// gather is dist.Gather with the runner's errors.
func gather[T any](c *dist.Comm, what string, share []T) ([]T, error) {
	out, err := dist.Gather(c, what, share)
	if err != nil {
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	return out, nil
}

// agree is dist.Agree: a failure on any rank ends the run on every rank. This rank's own error comes
// back as it was worded; another rank's is named as the run's.
func agree(c *dist.Comm, what string, err error) error {
	switch all := dist.Agree(c, what, err); {
	case all == nil:
		return nil
	case all == err:
		return err
	default:
		return fmt.Errorf("selfplay: %w", all)
	}
}

// cancelled is ctx.Err() decided together: the run stops when any rank was interrupted, at the same
// point on every rank, so none waits in a collective that another has left.
func (r *Runner) cancelled(ctx context.Context) error {
	if r.comm.Size() == 1 {
		return ctx.Err()
	}
	stop, err := dist.AnyOf(r.comm, "interrupt flags", ctx.Err() != nil)
	if err != nil {
		return fmt.Errorf("selfplay: %w", err)
	}
	if stop {
		return context.Canceled
	}
	return nil
}

// unsettled is a checkpoint whose outcome the other ranks have not learnt yet.
type unsettled struct {
	step int
	err  error // rank 0's (nil elsewhere)
}

// checkpointStep checkpoints the step just trained. Alone, its outcome is known at once; with other
// ranks it is settled by the next phase's gather, so they need not wait while rank 0 writes.
func (r *Runner) checkpointStep() error {
	err := r.checkpoint()
	if r.comm.Size() == 1 {
		return err
	}
	r.unsettled = &unsettled{step: r.state.Steps, err: err}
	return nil
}

// settleLast agrees on the run's last checkpoint, which no phase follows.
func (r *Runner) settleLast() error {
	u := r.unsettled
	if u == nil {
		return nil
	}
	r.unsettled = nil
	return agree(r.comm, fmt.Sprintf("checkpoint of step %d", u.step), u.err)
}

// roundShare is this rank's part [lo, hi) of a self-instruction round's n prompts. Right after a
// training step rank 0 is writing the checkpoint, so the other ranks take the round between them: a
// round is a few completions, which cost nearly as much to decode together as any part of them does,
// so a share for rank 0 would shorten theirs little and keep them waiting for it.
func (r *Runner) roundShare(n int) (lo, hi int) {
	return roundShareOf(n, r.comm.Rank(), r.comm.Size(), r.unsettled != nil)
}

// roundShareOf is roundShare for any rank, while rank 0 writes a checkpoint or not.
func roundShareOf(n, rank, size int, checkpointing bool) (lo, hi int) {
	if !checkpointing || size == 1 {
		return dist.SplitOf(n, rank, size)
	}
	if rank == 0 {
		return 0, 0
	}
	return dist.SplitOf(n, rank-1, size-1)
}

// phaseShare is what a rank contributes to a phase's gather: its share of the results, the tokens it
// generated for them, whether it was interrupted, and in the first gather after a training step the
// checkpoint's outcome — so none of these needs a collective of its own.
type phaseShare[T any] struct {
	Items  []T    `json:"items"`
	Tokens int    `json:"tokens"`
	Failed string `json:"failed,omitempty"`
	Stop   bool   `json:"stop,omitempty"`
}

// interrupted is the error of a phase whose decoding returned err. An interrupt (err is ctx's) stops
// the decoding at its next step rather than after the phase; the phase's gather still runs, with nothing
// of this rank's and its interrupt flag set, so that every rank stops there. Nothing of the tick is
// saved: the run resumes from its last checkpoint, as after a kill.
func interrupted[T any](ctx context.Context, r *Runner, what string, err error) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	if _, err := gatherPhase[T](ctx, r, what, nil, 0); err != nil {
		return err
	}
	return ctx.Err() // not reached: the gather carries this rank's interrupt
}

// gatherPhase gathers every rank's share of a phase's results in rank order (the list one process
// makes) and counts the generated tokens. An interrupt on any rank, or the failure of the checkpoint
// before, ends the run on every rank here (every tick has one such gather, before anything it
// changes is saved).
func gatherPhase[T any](ctx context.Context, r *Runner, what string, share []T, tokens int) ([]T, error) {
	mine := phaseShare[T]{Items: share, Tokens: tokens, Stop: ctx.Err() != nil}
	u := r.unsettled
	if u != nil && u.err != nil {
		mine.Failed = u.err.Error()
	}
	recs, err := gather(r.comm, what, []phaseShare[T]{mine})
	if err != nil {
		return nil, err
	}
	var all []T
	var fails []string
	stop := false
	for rank, rec := range recs {
		all = append(all, rec.Items...)
		r.counters.genTokens += rec.Tokens
		if rec.Failed != "" {
			fails = append(fails, fmt.Sprintf("rank %d: %s", rank, rec.Failed))
		}
		stop = stop || rec.Stop
	}
	if u != nil {
		r.unsettled = nil
		if len(fails) > 0 {
			return nil, fmt.Errorf("selfplay: checkpoint of step %d failed: %s", u.step, strings.Join(fails, "; "))
		}
	}
	if stop {
		return nil, context.Canceled
	}
	return all, nil
}
