package main

import (
	"fmt"
	"io"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/kernels"
)

// holdLogits decides whether a training arena keeps the head's logits from forward to backward
// (model.ArenaOptions.HoldLogits: one head matmul less a step, for [tokens, vocab] more memory), says
// which way it went, and returns it; plan(hold) is the whole memory plan either way.
func holdLogits(w io.Writer, d *kernels.Device, plan func(hold bool) (model.Plan, error)) (bool, error) {
	with, err := plan(true)
	if err != nil {
		return false, err
	}
	without, err := plan(false)
	if err != nil {
		return false, err
	}
	hold, why := decideHoldLogits(d.Info().Backend, d.Info().FreeMemory, with.Total(), without.Total())
	if why != "" {
		fmt.Fprintln(w, why)
	}
	return hold, nil
}

// holdTrainLogits is holdLogits over serl train's memory plan of cfg (trainPlan), so that serl train
// and serl info decide alike.
func holdTrainLogits(w io.Writer, d *kernels.Device, mc model.Config, cfg selfplay.Config, evalLongest, evalMaxNew int) (bool, error) {
	return holdLogits(w, d, func(hold bool) (model.Plan, error) {
		cfg.HoldLogits = hold
		return trainPlan(mc, cfg, evalLongest, evalMaxNew)
	})
}

// decideHoldLogits is holdLogits' rule. On a GPU the arena holds the logits when the plan with them
// (with bytes) fits in 90% of the free memory, the decode batch's rule, and says so unless the plans are
// equal (a batch the head takes in one chunk). On the CPU the head recomputes its chunks: memory is a
// CPU run's constraint, and its plans stay what `serl info` has always printed.
func decideHoldLogits(backend string, free, with, without int64) (bool, string) {
	if backend != "cuda" {
		return false, ""
	}
	if with == without { // one chunk takes the whole batch: holding it costs nothing
		return true, ""
	}
	extra, gib := float64(with-without)/(1<<30), float64(free)/(1<<30)
	if with > free/10*9 {
		return false, fmt.Sprintf("serl: the head recomputes its logits in the backward, a chunk at a time: holding them (%.2f GiB more) would not fit in 90%% of the GPU's %.1f GiB free", extra, gib)
	}
	return true, fmt.Sprintf("serl: the head keeps a step's logits from forward to backward (%.2f GiB more; the plan fits in 90%% of the GPU's %.1f GiB free), so its backward recomputes none", extra, gib)
}
