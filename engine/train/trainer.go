package train

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
)

// Trainer accumulates gradients over micro-batches and applies optimizer steps. Its buffers are
// allocated once; a micro-step allocates nothing on the Go heap.
type Trainer struct {
	Model *model.Model
	Acts  *model.Activations
	Grads *model.Blob
	Opt   *Optimizer

	coef  []float32
	logp  []float32
	first []int // a masked batch's first target per sequence
}

// NewTrainer allocates gradients, optimizer state and an activation arena for micro-batches of up to
// maxTokens tokens in maxSeqs sequences.
func NewTrainer(m *model.Model, c AdamWConfig, maxTokens, maxSeqs int) (*Trainer, error) {
	acts, err := m.NewActivations(maxTokens, maxSeqs)
	if err != nil {
		return nil, err
	}
	g, err := m.NewGrads()
	if err != nil {
		acts.Free()
		return nil, fmt.Errorf("train: gradients: %w", err)
	}
	opt, err := NewOptimizer(m, c)
	if err != nil {
		acts.Free()
		g.Free()
		return nil, err
	}
	return &Trainer{Model: m, Acts: acts, Grads: g, Opt: opt, coef: make([]float32, maxTokens), logp: make([]float32, maxTokens),
		first: make([]int, 0, maxSeqs)}, nil
}

// Free releases the trainer's memory (not the model's).
func (t *Trainer) Free() {
	t.Acts.Free()
	t.Grads.Free()
	t.Opt.Free()
}

// AccumulateNLL runs one micro-batch of the mean negative log-likelihood of every predicted token
// (each sequence's tokens after its first), scaled by weight (1/micro-batches for a mean over them),
// accumulating gradients. It returns the micro-batch's mean NLL and its number of predicted tokens.
func (t *Trainer) AccumulateNLL(ids []int32, seqLens []int, weight float64) (loss float64, predicted int, err error) {
	return t.accumulateNLL(ids, seqLens, nil, weight)
}

// Step applies the optimizer to the accumulated gradients and zeroes them for the next step.
func (t *Trainer) Step() (StepStats, error) {
	params, _ := t.Model.Trainable()
	st, err := t.Opt.Step(params, t.Grads)
	if err != nil {
		return st, err
	}
	return st, t.Model.Device().Zero(t.Grads.Data)
}
