package train

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// AdamWConfig holds the optimizer's settings (SeRL: β = (0.9, 0.95), ε = 1e-8, no weight decay,
// clip 1.0).
type AdamWConfig struct {
	Schedule    Schedule
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64 // decoupled, applied to every parameter
	ClipNorm    float64 // global L2 gradient norm limit; ≤ 0 disables clipping
}

// Optimizer is AdamW over a model's trainable blob (its parameters, or its LoRA adapters), with both moments in blobs of the same layout.
// Under bf16 each update also refreshes the bf16 copy of the weights that the model's ops read.
type Optimizer struct {
	Config AdamWConfig
	M, V   *model.Blob
	step   int // optimizer steps taken

	copy *model.Blob // the model's bf16 weights, refreshed after each update (nil under f32)

	norm     kernels.Tensor // F32 [1] the last gradient norm
	hostNorm []float32
}

// NewOptimizer allocates zeroed moments for m.
func NewOptimizer(m *model.Model, c AdamWConfig) (*Optimizer, error) {
	if c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || !(c.Eps > 0) {
		return nil, fmt.Errorf("train: AdamW β1 %g, β2 %g, ε %g out of range", c.Beta1, c.Beta2, c.Eps)
	}
	params, weights := m.Trainable() // with LoRA: the adapters; the frozen base gets no moments
	if params == nil {
		return nil, fmt.Errorf("train: AdamW on a frozen model (it keeps no float32 master weights)")
	}
	d := m.Device()
	mo, err := model.NewBlob(d, params.Layout)
	if err != nil {
		return nil, fmt.Errorf("train: AdamW first moment: %w", err)
	}
	vo, err := model.NewBlob(d, params.Layout)
	if err != nil {
		mo.Free()
		return nil, fmt.Errorf("train: AdamW second moment: %w", err)
	}
	norm, err := d.Alloc(kernels.F32, 1)
	if err != nil {
		mo.Free()
		vo.Free()
		return nil, err
	}
	o := &Optimizer{Config: c, M: mo, V: vo, norm: norm, hostNorm: make([]float32, 1)}
	if weights != params {
		o.copy = weights
	}
	return o, nil
}

// Steps is the number of optimizer steps taken.
func (o *Optimizer) Steps() int { return o.step }

// SetSteps restores the step counter (resuming from a checkpoint).
func (o *Optimizer) SetSteps(n int) { o.step = n }

// StepStats describes one optimizer step.
type StepStats struct {
	LR       float64
	GradNorm float64 // before clipping
}

// Step clips the gradients to the global norm limit and applies one AdamW update to params. The norm
// and the clipping stay on the device: grad_norm only measures, and AdamW reads the norm and scales
// each gradient as it loads it (one pass over the gradients fewer than scaling them in place); the norm
// is read back once, after the update has been issued, for the step's metrics only: nothing between
// the norm and the update waits for the host.
func (o *Optimizer) Step(params, grads *model.Blob) (StepStats, error) {
	d := params.Data.Device()
	lr := o.Config.Schedule.LR(o.step)
	if err := d.GradNorm(o.norm, grads.Data, 0); err != nil {
		return StepStats{}, err
	}
	h := kernels.AdamWParams{
		Step: o.step + 1, LR: float32(lr), Beta1: float32(o.Config.Beta1), Beta2: float32(o.Config.Beta2),
		Eps: float32(o.Config.Eps), WeightDecay: float32(o.Config.WeightDecay), GradScale: 1,
		GradNorm: o.norm, MaxNorm: float32(max(o.Config.ClipNorm, 0))}
	if o.copy != nil {
		h.PBF16 = o.copy.Data // the update writes the bf16 copy the ops read in the same pass
	}
	if err := d.AdamW(params.Data, grads.Data, o.M.Data, o.V.Data, h); err != nil {
		return StepStats{}, err
	}
	o.step++
	if err := kernels.Download(o.hostNorm, o.norm); err != nil {
		return StepStats{}, err
	}
	return StepStats{LR: lr, GradNorm: float64(o.hostNorm[0])}, nil
}

// Free releases the moments.
func (o *Optimizer) Free() {
	o.M.Free()
	o.V.Free()
	o.M.Data.Device().Free(o.norm)
}
