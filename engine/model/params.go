package model

import (
	"fmt"

	"github.com/serl-go/serl/kernels"
)

// ParamSpec is one named tensor of the parameter layout: its Hugging Face name, shape, and place in the
// blob (in elements, whatever the blob's dtype).
type ParamSpec struct {
	Name  string
	Shape []int
	Off   int
	Len   int
}

// Layout is the ordered parameter table of a configuration, in Hugging Face state_dict order. The
// parameters, their gradients and both AdamW moments are blobs of this one layout (llm.c style).
type Layout struct {
	Specs []ParamSpec
	Total int // elements
	index map[string]int
}

// Index returns the position of a named parameter.
func (l *Layout) Index(name string) (int, bool) {
	i, ok := l.index[name]
	return i, ok
}

// NewLayout lays out every parameter of c.
func NewLayout(c Config) *Layout {
	l := &Layout{index: map[string]int{}}
	add := l.add
	h, q, kv := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	add("model.embed_tokens.weight", c.Vocab, h)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"self_attn.q_proj.weight", q, h)
		if c.QKVBias {
			add(p+"self_attn.q_proj.bias", q)
		}
		add(p+"self_attn.k_proj.weight", kv, h)
		if c.QKVBias {
			add(p+"self_attn.k_proj.bias", kv)
		}
		add(p+"self_attn.v_proj.weight", kv, h)
		if c.QKVBias {
			add(p+"self_attn.v_proj.bias", kv)
		}
		add(p+"self_attn.o_proj.weight", h, q)
		if c.OBias {
			add(p+"self_attn.o_proj.bias", h)
		}
		add(p+"mlp.gate_proj.weight", c.Intermediate, h)
		if c.MLPBias {
			add(p+"mlp.gate_proj.bias", c.Intermediate)
		}
		add(p+"mlp.up_proj.weight", c.Intermediate, h)
		if c.MLPBias {
			add(p+"mlp.up_proj.bias", c.Intermediate)
		}
		add(p+"mlp.down_proj.weight", h, c.Intermediate)
		if c.MLPBias {
			add(p+"mlp.down_proj.bias", h)
		}
		add(p+"input_layernorm.weight", h)
		add(p+"post_attention_layernorm.weight", h)
	}
	add("model.norm.weight", h)
	if !c.TieEmbedding {
		add("lm_head.weight", c.Vocab, h)
	}
	return l
}

// add appends a tensor to the layout.
func (l *Layout) add(name string, shape ...int) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	l.index[name] = len(l.Specs)
	l.Specs = append(l.Specs, ParamSpec{Name: name, Shape: shape, Off: l.Total, Len: n})
	// Views start on 16-element (64-byte) boundaries so every tensor is aligned for vector loads (all
	// but the later members of a joined run, addJoined).
	l.Total += (n + 15) &^ 15
}

// addJoined appends tensors of one shape [rows, cols] back to back, padded only after the last, so that
// together they are one [len(names)·rows, cols] matrix (a LoRA group's A blocks); a member after the
// first starts where the one before ends, aligned or not.
func (l *Layout) addJoined(names []string, rows, cols int) {
	n := rows * cols
	for j, name := range names {
		l.index[name] = len(l.Specs)
		l.Specs = append(l.Specs, ParamSpec{Name: name, Shape: []int{rows, cols}, Off: l.Total + j*n, Len: n})
	}
	l.Total += (len(names)*n + 15) &^ 15
}

// NumParams counts parameters (without alignment padding).
func (l *Layout) NumParams() int {
	n := 0
	for _, s := range l.Specs {
		n += s.Len
	}
	return n
}

// Bytes is the size of a blob of this layout in dtype dt.
func (l *Layout) Bytes(dt kernels.DType) int64 { return int64(l.Total) * int64(dt.Size()) }

// Blob is one contiguous device allocation holding every tensor of a Layout.
type Blob struct {
	Layout     *Layout
	Data       kernels.Tensor // [Total] in the blob's dtype (F32, or BF16 for the weights' bf16 copy)
	views      []kernels.Tensor
	byName     *tensors // resolved on first use, so a training step does no name lookups
	loraByName []loraLayer
}

// NewBlob allocates a float32 blob of layout l on d, zeroed.
func NewBlob(d *kernels.Device, l *Layout) (*Blob, error) { return NewBlobOf(d, l, kernels.F32) }

// NewBlobOf allocates a blob of layout l in dtype dt on d, zeroed.
func NewBlobOf(d *kernels.Device, l *Layout, dt kernels.DType) (*Blob, error) {
	data, err := d.Alloc(dt, l.Total)
	if err != nil {
		return nil, err
	}
	if err := d.Zero(data); err != nil {
		return nil, err
	}
	b := &Blob{Layout: l, Data: data, views: make([]kernels.Tensor, len(l.Specs))}
	for i, s := range l.Specs {
		v := data.MustSlice(s.Off, s.Off+s.Len)
		b.views[i] = v.MustReshape(s.Shape...)
	}
	return b, nil
}

// DType is the blob's element type.
func (b *Blob) DType() kernels.DType { return b.Data.DType() }

// View returns the i-th tensor of the layout.
func (b *Blob) View(i int) kernels.Tensor { return b.views[i] }

// Get returns a tensor by its Hugging Face name.
func (b *Blob) Get(name string) (kernels.Tensor, bool) {
	i, ok := b.Layout.index[name]
	if !ok {
		return kernels.Tensor{}, false
	}
	return b.views[i], true
}

// Free releases the blob's memory.
func (b *Blob) Free() {
	if b != nil && b.Data.Valid() {
		b.Data.Device().Free(b.Data)
	}
}

// layerTensors are one decoder layer's tensors in a blob (absent biases are zero Tensors).
type layerTensors struct {
	wq, bq, wk, bk, wv, bv, wo, bo kernels.Tensor
	wg, bg, wu, bu, wd, bd         kernels.Tensor
	ln1, ln2                       kernels.Tensor
	// k and v's weights, and gate and up's, each as one batched product's B operand (generation)
	kv, gu weightPair
}

// weightPair is two weights of one shape [n, in] in a blob as one batched product's B operand: w a flat
// view from the first's start through the second's end, stride the second's offset from the first.
type weightPair struct {
	w      kernels.Tensor
	stride int
}

// tensors resolves a blob into the per-layer structure the forward and backward passes walk.
type tensors struct {
	embed, norm, head kernels.Tensor
	layers            []layerTensors
}

func (b *Blob) tensors(c Config) tensors {
	if b.byName == nil {
		t := b.resolve(c)
		b.byName = &t
	}
	return *b.byName
}

func (b *Blob) resolve(c Config) tensors {
	get := func(name string) kernels.Tensor {
		t, _ := b.Get(name)
		return t
	}
	t := tensors{embed: get("model.embed_tokens.weight"), norm: get("model.norm.weight"), layers: make([]layerTensors, c.Layers)}
	t.head = t.embed
	if !c.TieEmbedding {
		t.head = get("lm_head.weight")
	}
	pair := func(first, second string) weightPair {
		i, ok := b.Layout.Index(first)
		j, ok2 := b.Layout.Index(second)
		if !ok || !ok2 {
			return weightPair{}
		}
		a, z := b.Layout.Specs[i], b.Layout.Specs[j]
		return weightPair{b.Data.MustSlice(a.Off, z.Off+z.Len), z.Off - a.Off}
	}
	for i := range t.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		t.layers[i] = layerTensors{
			kv: pair(p+"self_attn.k_proj.weight", p+"self_attn.v_proj.weight"),
			gu: pair(p+"mlp.gate_proj.weight", p+"mlp.up_proj.weight"),
			wq: get(p + "self_attn.q_proj.weight"), bq: get(p + "self_attn.q_proj.bias"),
			wk: get(p + "self_attn.k_proj.weight"), bk: get(p + "self_attn.k_proj.bias"),
			wv: get(p + "self_attn.v_proj.weight"), bv: get(p + "self_attn.v_proj.bias"),
			wo: get(p + "self_attn.o_proj.weight"), bo: get(p + "self_attn.o_proj.bias"),
			wg: get(p + "mlp.gate_proj.weight"), bg: get(p + "mlp.gate_proj.bias"),
			wu: get(p + "mlp.up_proj.weight"), bu: get(p + "mlp.up_proj.bias"),
			wd: get(p + "mlp.down_proj.weight"), bd: get(p + "mlp.down_proj.bias"),
			ln1: get(p + "input_layernorm.weight"), ln2: get(p + "post_attention_layernorm.weight"),
		}
	}
	return t
}
