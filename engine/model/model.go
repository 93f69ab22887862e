package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/serl-go/serl/kernels"
)

// Model is a transformer's configuration and weights on a device.
type Model struct {
	Config Config
	Layout *Layout
	// Params are the float32 master weights (what training updates and Save writes); nil for a frozen
	// bf16 model, which keeps only Weights.
	Params *Blob
	// Weights are what the ops read: Params itself under f32, their bf16 copy under bf16.
	Weights *Blob
	// SourceDir is the folder the model was loaded from ("" for a new model): Save copies its tokenizer
	// files.
	SourceDir string
	// Files are written by Save into the folder beside the weights, replacing any copied from SourceDir
	// (serl's own serl.json: the prompt format the model was trained with).
	Files map[string][]byte

	opts    Options
	dev     *kernels.Device
	w       tensors        // views of Weights (RMSNorm weights: float32 views, see normViews)
	norms   kernels.Tensor // F32: a frozen bf16 model's RMSNorm weights (RMSNorm reads float32 weights)
	normAt  map[int]kernels.Tensor
	invFreq kernels.Tensor // F32 [HeadDim/2]
	scale   float32        // 1/sqrt(head_dim)

	lora     *Adapters // attached LoRA adapters (nil without): the base weights are then frozen
	borrowed bool      // a view of another model's memory (Base): Free leaves it alone
}

// New allocates a float32 model of configuration c on d with zeroed weights.
func New(d *kernels.Device, c Config) (*Model, error) { return NewWith(d, c, Options{}) }

// NewWith allocates a model of configuration c on d with zeroed weights, in the given precision.
func NewWith(d *kernels.Device, c Config, o Options) (*Model, error) {
	if o.Precision != PrecisionF32 && o.Precision != PrecisionBF16 {
		return nil, fmt.Errorf("model: %s", o.Precision)
	}
	l := NewLayout(c)
	m := &Model{Config: c, Layout: l, opts: o, dev: d, scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	var err error
	if o.keepsMaster() {
		if m.Params, err = NewBlob(d, l); err != nil {
			return nil, fmt.Errorf("model: parameters (%d floats): %w", l.Total, err)
		}
		m.Weights = m.Params
	}
	if o.hasCopy() {
		if m.Weights, err = NewBlobOf(d, l, kernels.BF16); err != nil {
			m.Free()
			return nil, fmt.Errorf("model: bf16 copy of the parameters (%d values): %w", l.Total, err)
		}
	}
	if !o.keepsMaster() {
		if m.norms, err = d.Alloc(kernels.F32, max(normLen(l), 1)); err != nil {
			m.Free()
			return nil, fmt.Errorf("model: RMSNorm weights: %w", err)
		}
	}
	if m.invFreq, err = d.Alloc(kernels.F32, c.HeadDim/2); err != nil {
		m.Free()
		return nil, err
	}
	if err := kernels.Upload(m.invFreq, c.InvFreq()); err != nil {
		m.Free()
		return nil, err
	}
	m.w = m.Weights.tensors(c)
	m.normViews()
	return m, nil
}

// isNorm reports whether a parameter is an RMSNorm weight, which the ops read in float32 whatever the
// precision.
func isNorm(name string) bool { return strings.HasSuffix(name, "norm.weight") }

// normLen is the float32 elements a frozen bf16 model keeps for its RMSNorm weights.
func normLen(l *Layout) int {
	n := 0
	for _, s := range l.Specs {
		if isNorm(s.Name) {
			n += (s.Len + 15) &^ 15
		}
	}
	return n
}

// normViews points the RMSNorm weights the passes read at float32 memory: the master weights, or a
// frozen bf16 model's own float32 copy of them.
func (m *Model) normViews() {
	m.normAt = map[int]kernels.Tensor{}
	off := 0
	for i, s := range m.Layout.Specs {
		if !isNorm(s.Name) {
			continue
		}
		if m.Params != nil {
			m.normAt[i] = m.Params.View(i)
		} else {
			m.normAt[i] = m.norms.MustSlice(off, off+s.Len).MustReshape(s.Shape...)
			off += (s.Len + 15) &^ 15
		}
	}
	norm := func(name string) kernels.Tensor {
		i, _ := m.Layout.Index(name)
		return m.normAt[i]
	}
	m.w.norm = norm("model.norm.weight")
	for i := range m.w.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		m.w.layers[i].ln1 = norm(p + "input_layernorm.weight")
		m.w.layers[i].ln2 = norm(p + "post_attention_layernorm.weight")
	}
}

// Device is the device holding the model.
func (m *Model) Device() *kernels.Device { return m.dev }

// Precision is the precision the model computes in.
func (m *Model) Precision() Precision { return m.opts.Precision }

// Options are the model's precision and whether it is frozen.
func (m *Model) Options() Options { return m.opts }

// SyncWeights refreshes the bf16 copy from the master weights after they were written directly
// (initialisation, a restored checkpoint); AdamW refreshes it itself after each update. Under f32
// there is no copy and it does nothing.
func (m *Model) SyncWeights() error {
	if m.Weights == m.Params || m.Params == nil {
		return nil
	}
	return m.dev.Cast(m.Weights.Data, m.Params.Data)
}

// Free releases the model's memory.
func (m *Model) Free() {
	if m.borrowed {
		return
	}
	if m.lora != nil {
		m.lora.free(m.dev)
		m.lora = nil
	}
	if m.Weights != m.Params {
		m.Weights.Free()
	}
	m.Params.Free()
	m.dev.Free(m.norms)
	m.dev.Free(m.invFreq)
}

// NewGrads allocates a zeroed float32 gradient blob of what training updates: the adapters when they
// are attached (the frozen base gets none), else the model's layout.
func (m *Model) NewGrads() (*Blob, error) {
	if m.lora != nil {
		return NewBlob(m.dev, m.lora.Layout)
	}
	if m.Params == nil {
		return nil, fmt.Errorf("model: gradients of a frozen bf16 model (it keeps no master weights)")
	}
	return NewBlob(m.dev, m.Layout)
}

// stage validates a packed batch and uploads its ids, next-token targets, positions and sequence
// offsets. Sequence s is ids[sum(seqLens[:s]) : sum(seqLens[:s+1])]; positions restart at 0 in each.
// With first (one entry per sequence, 1 ≤ first[s] ≤ its length), the head's rows are only those that
// predict tokens first[s] onwards of each sequence, and the targets uploaded are theirs, in that order.
func (m *Model) stage(a *Activations, ids []int32, seqLens []int, first []int) error {
	T, S := len(ids), len(seqLens)
	if T == 0 || T > a.MaxTokens {
		return fmt.Errorf("model: batch of %d tokens (arena holds 1..%d)", T, a.MaxTokens)
	}
	if S > a.MaxSeqs {
		return fmt.Errorf("model: batch of %d sequences (arena holds %d)", S, a.MaxSeqs)
	}
	if first != nil && len(first) != S {
		return fmt.Errorf("model: %d first predicted positions for %d sequences", len(first), S)
	}
	t, maxLen, hr := 0, 0, 0
	a.hostCu[0] = 0
	a.hostSegs = a.hostSegs[:0]
	for s, n := range seqLens {
		if n < 1 {
			return fmt.Errorf("model: sequence %d is empty", s)
		}
		if n > m.Config.MaxPositions {
			return fmt.Errorf("model: sequence %d has %d tokens, more than max_position_embeddings %d", s, n, m.Config.MaxPositions)
		}
		if t+n > T {
			break
		}
		for i := 0; i < n; i++ {
			id := ids[t+i]
			if id < 0 || int(id) >= m.Config.Vocab {
				return fmt.Errorf("model: token id %d at position %d of sequence %d is outside the vocabulary of %d", id, i, s, m.Config.Vocab)
			}
			a.hostIDs[t+i] = id
			a.hostPos[t+i] = int32(i)
			a.hostTargets[t+i] = -1
			if i+1 < n {
				a.hostTargets[t+i] = ids[t+i+1]
			}
		}
		if first != nil {
			f := first[s]
			if f < 1 || f > n {
				return fmt.Errorf("model: first predicted position %d of sequence %d of %d tokens (want 1..%d)", f, s, n, n)
			}
			// rows f−1 .. n−2 predict tokens f .. n−1; the targets move down to their head rows
			// (hr ≤ t+f−1: they never overtake the ones still to be read)
			a.hostSegs = append(a.hostSegs, headSeg{from: t + f - 1, to: hr, n: n - f})
			hr += copy(a.hostTargets[hr:], a.hostTargets[t+f-1:t+n-1])
		}
		t += n
		maxLen = max(maxLen, n)
		a.hostCu[s+1] = int32(t)
	}
	if t != T {
		return fmt.Errorf("model: sequence lengths add up to %d, batch has %d tokens", t, T)
	}
	a.tokens, a.seqs, a.maxLen, a.hr, a.segs = T, S, maxLen, T, nil
	if first != nil {
		a.hr, a.segs = hr, a.hostSegs
	}
	return uploadI32(i32Upload{a.ids, a.hostIDs[:T]}, i32Upload{a.targets, a.hostTargets[:a.hr]},
		i32Upload{a.pos, a.hostPos[:T]}, i32Upload{a.cu, a.hostCu[:S+1]})
}

// Forward runs the packed batch through the model: logits, and per token t the log-probability of the
// next token of its sequence (0 at each sequence's last token). Everything backward needs is kept in a.
func (m *Model) Forward(a *Activations, ids []int32, seqLens []int) error {
	return m.ForwardFrom(a, ids, seqLens, nil)
}

// ForwardFrom is Forward whose head computes only what a loss over the later tokens of each sequence
// needs: the log-probabilities of tokens first[s] onwards of sequence s (first[s] ≥ 1), in order, as
// the batch's head rows (HeadRows; Grad's chunks, LogProbTensor and Coef count in them). A prompt's
// rows skip the head's matrix product, its log-softmax and their backward; for a model with a large
// vocabulary that is a good part of a prompt token's cost (Qwen2.5-0.5B's head is 27% of its weight
// FLOPs per token). first nil is Forward.
func (m *Model) ForwardFrom(a *Activations, ids []int32, seqLens []int, first []int) error {
	if err := m.stage(a, ids, seqLens, first); err != nil {
		return err
	}
	return m.ForwardAgain(a)
}

// ForwardAgain is Forward on the batch a already holds, staged by the latest Forward into a (of m or of
// another model of the same configuration, e.g. the policy before the reference): the token ids,
// targets, positions and offsets are on the device already, so nothing crosses to it.
func (m *Model) ForwardAgain(a *Activations) error {
	if a.tokens == 0 {
		return fmt.Errorf("model: forward again without a staged batch")
	}
	return m.forward(a, tensors{}, nil)
}

// forward runs the staged batch through the model; with coef (Grad) the head does its backward too,
// into g.
func (m *Model) forward(a *Activations, g tensors, coef CoefFunc) error {
	if m.lora != nil && a.lu == nil {
		return fmt.Errorf("model: activations allocated before the adapters were attached")
	}
	d, T := m.dev, a.tokens
	a.logitsHeld, a.headDone = false, false // until the head says otherwise: a failed layer leaves neither
	x := rows(a.xs[0], T)
	if err := d.EmbeddingFwd(x, m.w.embed, rows(a.ids, T)); err != nil {
		return err
	}
	for l := range m.w.layers {
		if err := m.layerForward(a, l); err != nil {
			return fmt.Errorf("model: layer %d: %w", l, err)
		}
	}
	return m.headForward(a, g, coef)
}

// CoefFunc writes the coefficients ∂L/∂logp of the batch's head rows [t0, t1) (its packed tokens, or
// the rows ForwardFrom's first selects) into a.Coef()[t0:t1] on the device, once the forward has
// computed their log-probs (a.LogProbTensor()[t0:t1]); entries at positions without a target are
// ignored. Grad calls it once per chunk of the head, from the last chunk to the first.
type CoefFunc func(t0, t1 int) error

// Grad is Forward then BackwardCoef in one pass, for a loss whose ∂L/∂logp of each token is known as
// soon as that token's logp is (coef): it accumulates into g the gradient of Σ_t coef[t]·logp[t] of the
// packed batch, and leaves a's log-probs as Forward does. The head turns each chunk's logits into
// dlogits while they are in its buffer, so none is recomputed: one head matmul less than Forward and
// Backward for every chunk but the last, no more memory, and the same bits in g and the log-probs.
func (m *Model) Grad(a *Activations, g *Blob, ids []int32, seqLens []int, coef CoefFunc) error {
	return m.GradFrom(a, g, ids, seqLens, nil, coef)
}

// GradFrom is Grad over the head rows ForwardFrom's first selects: the gradient of Σ coef·logp over
// the log-probs of tokens first[s] onwards of each sequence s.
func (m *Model) GradFrom(a *Activations, g *Blob, ids []int32, seqLens []int, first []int, coef CoefFunc) error {
	if coef == nil {
		return fmt.Errorf("model: gradient without coefficients")
	}
	if err := m.stage(a, ids, seqLens, first); err != nil {
		return err
	}
	return m.grad(a, g, coef)
}

// GradHost is Grad with coefficients known before the forward, one per token of the batch (coef, as
// Backward takes them).
func (m *Model) GradHost(a *Activations, g *Blob, ids []int32, seqLens []int, coef []float32) error {
	if len(coef) != len(ids) {
		return fmt.Errorf("model: %d coefficients for %d tokens", len(coef), len(ids))
	}
	return m.GradHostFrom(a, g, ids, seqLens, nil, coef)
}

// GradHostFrom is GradHost over the head rows ForwardFrom's first selects: one coefficient per row.
func (m *Model) GradHostFrom(a *Activations, g *Blob, ids []int32, seqLens []int, first []int, coef []float32) error {
	if err := m.stage(a, ids, seqLens, first); err != nil {
		return err
	}
	if err := a.setCoef(coef); err != nil {
		return err
	}
	return m.grad(a, g, func(int, int) error { return nil })
}

// setCoef uploads one coefficient per head row of the staged batch into Coef().
func (a *Activations) setCoef(coef []float32) error {
	if len(coef) != a.hr {
		return fmt.Errorf("model: %d coefficients for %d head rows", len(coef), a.hr)
	}
	if a.hr == 0 {
		return nil
	}
	return kernels.Upload(rows(a.coef, a.hr), coef)
}

func (m *Model) grad(a *Activations, g *Blob, coef CoefFunc) error {
	gw, gl, err := m.gradTensors(a, g)
	if err != nil {
		return err
	}
	if err := m.forward(a, gw, coef); err != nil {
		return err
	}
	return m.backward(a, gw, gl)
}

// Backward computes the gradient of Σ_t coef[t]·logp[t] into g (accumulating: zero g first for a fresh
// step) from the state a Forward left. coef has one entry per head row of the batch (per token after
// Forward); entries at positions without a target are ignored. The logits buffer is overwritten.
func (m *Model) Backward(a *Activations, g *Blob, coef []float32) error {
	if a.tokens == 0 {
		return fmt.Errorf("model: backward without a forward")
	}
	if err := a.setCoef(coef); err != nil {
		return err
	}
	return m.BackwardCoef(a, g)
}

// BackwardCoef is Backward with the coefficients already on the device, in a.Coef() (written there by
// a device op, e.g. kernels.PPOCoef): nothing crosses to or from the host.
func (m *Model) BackwardCoef(a *Activations, g *Blob) error {
	if a.tokens == 0 {
		return fmt.Errorf("model: backward without a forward")
	}
	gw, gl, err := m.gradTensors(a, g)
	if err != nil {
		return err
	}
	return m.backward(a, gw, gl)
}

// gradTensors checks g against what training updates and returns the views the backward writes: the
// base's (under LoRA only the RMSNorm weights', into a zeroed sink) and the adapters'.
func (m *Model) gradTensors(a *Activations, g *Blob) (tensors, []loraLayer, error) {
	if m.lora == nil {
		if g.Layout != m.Layout {
			return tensors{}, nil, fmt.Errorf("model: gradient blob of another layout")
		}
		return g.tensors(m.Config), nil, nil
	}
	if g.Layout != m.lora.Layout {
		return tensors{}, nil, fmt.Errorf("model: gradient blob of another layout than the adapters'")
	}
	if a.lu == nil {
		return tensors{}, nil, fmt.Errorf("model: activations allocated before the adapters were attached")
	}
	// The frozen base gets no gradients; the RMSNorm backward still writes its weights' gradient, into
	// a sink that is zeroed so it never overflows.
	if err := m.dev.Zero(a.normSink); err != nil {
		return tensors{}, nil, err
	}
	return a.frozen, g.loraGrads(m.Config), nil
}

// backward runs the backward pass from the head (or what a Grad's forward left of it) to the
// embedding.
func (m *Model) backward(a *Activations, gw tensors, gl []loraLayer) error {
	if err := m.headBackward(a, gw); err != nil {
		return err
	}
	for l := len(m.w.layers) - 1; l >= 0; l-- {
		if err := m.layerBackward(a, gw, gl, l); err != nil {
			return fmt.Errorf("model: layer %d backward: %w", l, err)
		}
	}
	if !gw.embed.Valid() {
		return nil
	}
	return m.dev.EmbeddingBwd(gw.embed, rows(a.dx, a.tokens), rows(a.ids, a.tokens))
}

// LogProbTensor is the current batch's log-probabilities on the device, one per head row (F32
// [HeadRows], see Forward and ForwardFrom); valid until the next forward of a (Forward, ForwardAgain,
// Grad): a backward leaves it.
func (a *Activations) LogProbTensor() kernels.Tensor { return rows(a.logp, a.hr) }

// Coef is the device buffer BackwardCoef reads its coefficients ∂L/∂logp from (F32 [HeadRows]).
func (a *Activations) Coef() kernels.Tensor { return rows(a.coef, a.hr) }

// HeadRows is the current batch's head rows: its tokens after Forward or Grad, the selected ones after
// ForwardFrom or GradFrom.
func (a *Activations) HeadRows() int { return a.hr }

// LogProbs copies the current batch's log-probabilities (LogProbTensor) into dst[:HeadRows].
func (a *Activations) LogProbs(dst []float32) error {
	return kernels.Download(dst[:a.hr], rows(a.logp, a.hr))
}
