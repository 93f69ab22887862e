package model

import (
	"fmt"

	"github.com/serl-go/serl/kernels"
)

// Precision is how a model computes, a run setting (--precision).
//
// PrecisionF32 is float32 everywhere. PrecisionBF16 is mixed precision: float32 master weights,
// gradients and AdamW moments; a bf16 copy of the weights that every op reads (AdamW refreshes it
// after each update); bf16 activations and KV cache; float32 norm statistics, log-sum-exps,
// log-probabilities, losses and sampling logits.
type Precision int

const (
	PrecisionF32 Precision = iota
	PrecisionBF16
)

// ParsePrecision reads a --precision value: f32 or bf16.
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "f32":
		return PrecisionF32, nil
	case "bf16":
		return PrecisionBF16, nil
	}
	return 0, fmt.Errorf("precision %q: want f32 or bf16", s)
}

func (p Precision) String() string {
	switch p {
	case PrecisionF32:
		return "f32"
	case PrecisionBF16:
		return "bf16"
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// Act is the dtype of activations, of the KV cache and of the weights the ops read.
func (p Precision) Act() kernels.DType {
	if p == PrecisionBF16 {
		return kernels.BF16
	}
	return kernels.F32
}

// Options are how a model is set up on its device.
type Options struct {
	Precision Precision
	// Frozen marks weights that are never trained (RL's reference model): under bf16 only the bf16
	// copy is kept, so the model costs half its float32 size. A frozen model cannot be trained.
	Frozen bool
}

// keepsMaster reports whether the float32 master blob exists beside the weights the ops read.
func (o Options) keepsMaster() bool { return !o.Frozen || o.Precision == PrecisionF32 }

// hasCopy reports whether the ops read a bf16 copy separate from the master weights.
func (o Options) hasCopy() bool { return o.Precision == PrecisionBF16 }
