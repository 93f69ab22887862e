package selfplay

import (
	"context"
	"fmt"

	"github.com/serl-go/serl/engine/dist"
)

// Data parallelism (docs/SERL.md, "Beyond one process"): every rank holds the whole loop state and
// replays the same decisions, while the expensive work of each phase — self-instruction completions,
// rollouts and their rewards, log-probs, each optimizer step's gradient — is split in contiguous
// shares (dist.Comm.Split) and gathered back in rank order, so that the gathered result is the list
// one process would have made. Sampling draws from a stream keyed by (seed, tick, request), never from
// what was decoded with it, so a split changes no token. Rank 0 alone writes the run directory.

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

// agree is dist.Agree: a failure on any rank ends the run on every rank.
func agree(c *dist.Comm, what string, err error) error {
	if err := dist.Agree(c, what, err); err != nil {
		return fmt.Errorf("selfplay: %w", err)
	}
	return nil
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
