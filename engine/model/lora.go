package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/internal/atomicfile"
	"github.com/serl-go/serl/kernels"
)

// LoRA (Hu et al. 2021) as PEFT computes it: each targeted linear layer W [out, in] gets adapters
// A [R, in] and B [out, R], and y = x·Wᵀ + (alpha/R)·(x·Aᵀ)·Bᵀ, unmerged. The base weights stay frozen:
// no gradients, no moments, and the KL reference is the same forward with the adapters off (Base).

// LoRATargets are the projections an adapter can target, in the order of a decoder layer.
var LoRATargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// loraModule is a target's module path inside a layer (PEFT's name).
func loraModule(t string) string {
	if t == "gate_proj" || t == "up_proj" || t == "down_proj" {
		return "mlp." + t
	}
	return "self_attn." + t
}

// LoRAConfig is the adapters' shape: rank, alpha and the targeted projections.
type LoRAConfig struct {
	Rank    int
	Alpha   float64
	Targets []string // a subset of LoRATargets
}

// LoRASettings are a run configuration's adapter fields as its config.json records them, shared by
// serl train's and serl pretrain's configurations (embedded there); LoRA makes the LoRAConfig.
type LoRASettings struct {
	LoRARank    int      `json:"lora_rank,omitempty"`
	LoRAAlpha   float64  `json:"lora_alpha,omitempty"`
	LoRATargets []string `json:"lora_targets,omitempty"`
}

// LoRA is the adapter configuration, nil when the whole model trains (rank 0).
func (s LoRASettings) LoRA() *LoRAConfig {
	if s.LoRARank == 0 {
		return nil
	}
	return &LoRAConfig{Rank: s.LoRARank, Alpha: s.LoRAAlpha, Targets: s.LoRATargets}
}

// ParseLoRATargets reads a comma-separated --lora-targets value.
func ParseLoRATargets(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(LoRATargets, t) {
			return nil, fmt.Errorf("lora target %q: want some of %s", t, strings.Join(LoRATargets, ","))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lora targets %q: none given", s)
	}
	return out, nil
}

// Validate reports a configuration that cannot be used.
func (lc LoRAConfig) Validate() error {
	if lc.Rank < 1 {
		return fmt.Errorf("lora rank %d (want ≥ 1)", lc.Rank)
	}
	if !(lc.Alpha > 0) || math.IsInf(lc.Alpha, 0) {
		return fmt.Errorf("lora alpha %v (want a finite value > 0)", lc.Alpha)
	}
	if len(lc.Targets) == 0 {
		return fmt.Errorf("lora: no target modules")
	}
	for _, t := range lc.Targets {
		if !slices.Contains(LoRATargets, t) {
			return fmt.Errorf("lora target %q: want some of %s", t, strings.Join(LoRATargets, ","))
		}
	}
	return nil
}

// Scale is alpha/R.
func (lc LoRAConfig) Scale() float64 { return lc.Alpha / float64(lc.Rank) }

func (lc LoRAConfig) targets(i int) bool { return slices.Contains(lc.Targets, LoRATargets[i]) }

// loraGroups are the targets that read one input, by index into LoRATargets: q, k and v read ln1, o the
// attention's output, gate and up ln2, down the MLP's activation. A group's A blocks lie back to back in
// the adapter layout, one [n·R, in] matrix for its n adapted targets, so the group's down-projection
// x·Aᵀ is one product that reads x once, and so are the backward's dA += duᵀ·x and dx += du·A (one
// pass over dx where there were three for q, k and v).
var loraGroups = [...][]int{qkvGroup: {0, 1, 2}, oGroup: {3}, gateUpGroup: {4, 5}, downGroup: {6}}

// The target groups, in layer order.
const (
	qkvGroup = iota
	oGroup
	gateUpGroup
	downGroup
	loraNumGroups
)

// members are group g's adapted targets, in layer order.
func (lc LoRAConfig) members(g int) []int {
	var ts []int
	for _, i := range loraGroups[g] {
		if lc.targets(i) {
			ts = append(ts, i)
		}
	}
	return ts
}

// scratchCols are the columns of a u or du scratch that serves every group: R × the most adapted
// targets of any group.
func (lc LoRAConfig) scratchCols() int {
	w := 0
	for g := range loraGroups {
		w = max(w, len(lc.members(g)))
	}
	return w * lc.Rank
}

// loraShape is target i's [out, in] in configuration c.
func (c Config) loraShape(i int) (out, in int) {
	h, q, kv, im := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate
	s := [7][2]int{{q, h}, {kv, h}, {kv, h}, {h, q}, {im, h}, {im, h}, {h, im}}[i]
	return s[0], s[1]
}

// loraPrefix is PEFT's prefix of a causal LM's adapter tensors.
const loraPrefix = "base_model.model."

// loraName is PEFT's name of layer l's target i adapter ("A" or "B").
func loraName(l, i int, ab string) string {
	return fmt.Sprintf("%smodel.layers.%d.%s.lora_%s.weight", loraPrefix, l, loraModule(LoRATargets[i]), ab)
}

// NewLoRALayout lays out the adapters of c under PEFT's tensor names, layer by layer and group by group:
// the group's A blocks joined (loraGroups), then its B blocks. A blocks keep their order across the
// layout, so new adapters draw the same initial values whatever the grouping.
func NewLoRALayout(c Config, lc LoRAConfig) *Layout {
	l := &Layout{index: map[string]int{}}
	for layer := 0; layer < c.Layers; layer++ {
		for g := range loraGroups {
			ms := lc.members(g)
			if len(ms) == 0 {
				continue
			}
			names := make([]string, len(ms))
			for j, i := range ms {
				names[j] = loraName(layer, i, "A")
			}
			_, in := c.loraShape(ms[0]) // a group's targets read one input
			l.addJoined(names, lc.Rank, in)
			for _, i := range ms {
				out, _ := c.loraShape(i)
				l.add(loraName(layer, i, "B"), out, lc.Rank)
			}
		}
	}
	return l
}

// loraPair is one target's adapters (zero Tensors where the target is not adapted).
type loraPair struct{ a, b kernels.Tensor }

// loraLayer is one layer's adapter views: each target's A and B, and each group's joined A [n·R, in]
// (zero Tensors where a target, or every target of a group, is not adapted).
type loraLayer struct {
	t [7]loraPair
	a [loraNumGroups]kernels.Tensor
}

// loraViews resolves a blob of the adapter layout into per-layer views.
func loraViews(b *Blob, c Config) []loraLayer {
	v := make([]loraLayer, c.Layers)
	for l := range v {
		for g, group := range loraGroups {
			first, rows := -1, 0
			for _, i := range group {
				ai, ok := b.Layout.Index(loraName(l, i, "A"))
				if !ok {
					continue
				}
				bi, _ := b.Layout.Index(loraName(l, i, "B"))
				v[l].t[i] = loraPair{b.View(ai), b.View(bi)}
				if first < 0 {
					first = ai
				}
				rows += b.View(ai).Dim(0)
			}
			if first >= 0 { // NewLoRALayout joined the group's A blocks from its first on
				s := b.Layout.Specs[first]
				v[l].a[g] = b.Data.MustSlice(s.Off, s.Off+rows*s.Shape[1]).MustReshape(rows, s.Shape[1])
			}
		}
	}
	return v
}

// Adapters are a model's LoRA adapters: float32 master weights (what AdamW updates and SaveAdapters
// writes) and, under bf16, the bf16 copy the ops read.
type Adapters struct {
	Config    LoRAConfig
	Layout    *Layout
	Params    *Blob
	Weights   *Blob
	SourceDir string // the adapter folder they were loaded from ("" for new ones)

	w     []loraLayer
	scale float32
	col   [7]int             // target i's first column in its group's u and du
	width [loraNumGroups]int // a group's columns in u and du: R × its adapted targets
}

// AttachLoRA gives m new adapters, initialised as PEFT does: A from kaiming_uniform(a=√5), which is
// U(−1/√in, 1/√in), drawn in layout order from one PCG stream of seed; B zero, so the adapted model
// starts as the base. The base weights become frozen: Backward then computes adapter gradients only.
func (m *Model) AttachLoRA(lc LoRAConfig, seed uint64) (*Adapters, error) {
	ad, err := m.newAdapters(lc)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x10ca))
	var host []float32
	for i, s := range ad.Layout.Specs {
		host = append(host[:0], make([]float32, s.Len)...)
		if strings.HasSuffix(s.Name, ".lora_A.weight") {
			bound := 1 / math.Sqrt(float64(s.Shape[1]))
			for j := range host {
				host[j] = float32((2*rng.Float64() - 1) * bound)
			}
		}
		if err := kernels.Upload(ad.Params.View(i), host); err != nil {
			ad.free(m.dev)
			return nil, err
		}
	}
	if err := ad.SyncWeights(); err != nil {
		ad.free(m.dev)
		return nil, err
	}
	m.lora = ad
	return ad, nil
}

func (m *Model) newAdapters(lc LoRAConfig) (*Adapters, error) {
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if m.lora != nil {
		return nil, fmt.Errorf("model: adapters are already attached")
	}
	l := NewLoRALayout(m.Config, lc)
	ad := &Adapters{Config: lc, Layout: l, scale: float32(lc.Scale())}
	for g := range loraGroups {
		for j, i := range lc.members(g) {
			ad.col[i] = j * lc.Rank
			ad.width[g] += lc.Rank
		}
	}
	var err error
	if ad.Params, err = NewBlob(m.dev, l); err != nil {
		return nil, fmt.Errorf("model: LoRA adapters (%d floats): %w", l.Total, err)
	}
	ad.Weights = ad.Params
	if m.opts.hasCopy() {
		if ad.Weights, err = NewBlobOf(m.dev, l, kernels.BF16); err != nil {
			ad.Params.Free()
			return nil, fmt.Errorf("model: bf16 copy of the LoRA adapters: %w", err)
		}
	}
	ad.w = loraViews(ad.Weights, m.Config)
	return ad, nil
}

// SyncWeights refreshes the adapters' bf16 copy from their master weights (nothing under f32).
func (ad *Adapters) SyncWeights() error {
	if ad.Weights == ad.Params {
		return nil
	}
	return ad.Params.Data.Device().Cast(ad.Weights.Data, ad.Params.Data)
}

func (ad *Adapters) free(d *kernels.Device) {
	if ad.Weights != ad.Params {
		ad.Weights.Free()
	}
	ad.Params.Free()
}

// LoRA is the model's adapters, nil without.
func (m *Model) LoRA() *Adapters { return m.lora }

// Base is the same model with its adapters off: the same weights on the same device (nothing copied),
// for RL's KL reference. Its Free does nothing; the model it came from owns the memory.
func (m *Model) Base() *Model {
	b := *m
	b.lora = nil
	b.borrowed = true
	return &b
}

// Trainable are the weights training updates: the adapters' master and the copy the ops read when
// adapters are attached, else the model's.
func (m *Model) Trainable() (params, weights *Blob) {
	if m.lora != nil {
		return m.lora.Params, m.lora.Weights
	}
	return m.Params, m.Weights
}

// loraDown computes group g's u = x·Aᵀ [T, n·R], the down-projection of its n adapted targets in one
// product; u is kept for the backward pass (or is scratch in generation). Nothing without adapters or
// where the group has none.
func (m *Model) loraDown(p *pass, l, g int, x, u kernels.Tensor) {
	if m.lora == nil || !m.lora.w[l].a[g].Valid() {
		return
	}
	p.matmul(kernels.MatMul{A: x, B: m.lora.w[l].a[g], C: u, TransB: true, Alpha: 1})
}

// loraUp adds target i's adapter term to y = x·Wᵀ: y += scale·u_i·B_iᵀ, with u_i target i's R columns of
// its group's u (loraDown).
func (m *Model) loraUp(p *pass, l, i int, y, u kernels.Tensor) {
	if m.lora == nil || !m.lora.w[l].t[i].a.Valid() {
		return
	}
	ad, b := m.lora, m.lora.w[l].t[i].b
	p.matmulStrided(kernels.StridedMatMul{A: fromColumn(u, ad.col[i]), B: b, C: y, TransB: true,
		M: u.Dim(0), N: b.Dim(0), K: ad.Config.Rank, LDA: u.Dim(1), LDB: ad.Config.Rank, LDC: y.Dim(1),
		Alpha: ad.scale, Beta: 1})
}

// loraBackward adds group g's adapter terms to the backward of its projections, which read x: dys are
// the output gradients of the group's targets (loraGroups order), u = x·Aᵀ is the forward's (loraDown).
// Each adapted target i takes dB_i += s·dy_iᵀ·u_i and du_i = s·dy_i·B_i (its columns of du), then the
// group as a whole dA += duᵀ·x and dx += du·A. du is scratch [T, ≥ width].
func (m *Model) loraBackward(p *pass, gl []loraLayer, l, g int, dx, x, u, duBuf kernels.Tensor, dys ...kernels.Tensor) {
	ad := m.lora
	if !ad.w[l].a[g].Valid() {
		return
	}
	T, R, s := x.Dim(0), ad.Config.Rank, ad.scale
	du := leading(duBuf, T, ad.width[g])
	for j, i := range loraGroups[g] {
		w := ad.w[l].t[i]
		if !w.a.Valid() {
			continue
		}
		dy, c := dys[j], ad.col[i]
		p.matmulStrided(kernels.StridedMatMul{A: dy, B: fromColumn(u, c), C: gl[l].t[i].b, TransA: true,
			M: dy.Dim(1), N: R, K: T, LDA: dy.Dim(1), LDB: u.Dim(1), LDC: R, Alpha: s, Beta: 1})
		p.matmulStrided(kernels.StridedMatMul{A: dy, B: w.b, C: fromColumn(du, c),
			M: T, N: R, K: dy.Dim(1), LDA: dy.Dim(1), LDB: R, LDC: du.Dim(1), Alpha: s})
	}
	p.matmul(kernels.MatMul{A: du, B: x, C: gl[l].a[g], TransA: true, Alpha: 1, Beta: 1})
	p.matmul(kernels.MatMul{A: du, B: ad.w[l].a[g], C: dx, Alpha: 1, Beta: 1})
}

// fromColumn views t [T, W] from column c on, flat: with row stride W, its first columns are t's
// columns c, c+1, … (a target's slice of its group's u or du, for a strided product).
func fromColumn(t kernels.Tensor, c int) kernels.Tensor {
	f := flatAll(t)
	return f.MustSlice(min(c, f.Len()), f.Len())
}

// leading views the first T·W elements of buf as [T, W] (a group's u or du in scratch sized for the
// widest group).
func leading(buf kernels.Tensor, T, W int) kernels.Tensor {
	return buf.MustReshape(buf.Len()).MustSlice(0, T*W).MustReshape(T, W)
}

// loraSlots are the training arena's adapter activations: u = x·Aᵀ per layer and group [T, n·R], one du
// scratch for the widest group, and a float32 sink for the frozen RMSNorm weights' gradients the norm
// backward writes.
func (c Config) loraSlots(a *Activations, lc *LoRAConfig, T int, act kernels.DType) []arenaSlot {
	if lc == nil {
		return nil
	}
	var slots []arenaSlot
	a.lu = make([][loraNumGroups]kernels.Tensor, c.Layers)
	for l := range a.lu {
		for g := range loraGroups {
			if n := len(lc.members(g)); n > 0 {
				slots = append(slots, arenaSlot{&a.lu[l][g], act, []int{T, n * lc.Rank}})
			}
		}
	}
	slots = append(slots, arenaSlot{&a.ldu, act, []int{T, lc.scratchCols()}})
	slots = append(slots, arenaSlot{&a.normSink, kernels.F32, []int{c.Hidden}})
	return slots
}

// adapterConfig is PEFT's adapter_config.json (the fields PEFT needs to load a LoRA of a causal LM).
type adapterConfig struct {
	PeftType        string   `json:"peft_type"`
	TaskType        string   `json:"task_type"`
	R               int      `json:"r"`
	LoraAlpha       float64  `json:"lora_alpha"`
	LoraDropout     float64  `json:"lora_dropout"`
	TargetModules   []string `json:"target_modules"`
	Bias            string   `json:"bias"`
	FanInFanOut     bool     `json:"fan_in_fan_out"`
	InferenceMode   bool     `json:"inference_mode"`
	UseRSLoRA       bool     `json:"use_rslora"`
	UseDoRA         bool     `json:"use_dora"`
	InitLoraWeights bool     `json:"init_lora_weights"`
	BaseModel       string   `json:"base_model_name_or_path"`
}

// Adapter file names of a PEFT folder.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
)

// IsAdapterDir reports whether dir holds a PEFT adapter.
func IsAdapterDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, AdapterConfigFile))
	return err == nil
}

// Save writes the adapters as a PEFT folder (adapter_config.json and adapter_model.safetensors in
// float32 under PEFT's names), each file written atomically. base names the base model
// (base_model_name_or_path).
func (ad *Adapters) Save(dir, base string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: save adapters: %w", err)
	}
	cfg := adapterConfig{PeftType: "LORA", TaskType: "CAUSAL_LM", R: ad.Config.Rank, LoraAlpha: ad.Config.Alpha,
		TargetModules: ad.Config.Targets, Bias: "none", InferenceMode: true, InitLoraWeights: true, BaseModel: base}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, AdapterConfigFile), append(b, '\n')); err != nil {
		return fmt.Errorf("model: save adapters: %w", err)
	}
	return ad.Params.WriteSafetensors(filepath.Join(dir, AdapterWeightsFile), safetensors.F32)
}

// ReadLoRAConfig reads a PEFT folder's adapter_config.json.
func ReadLoRAConfig(dir string) (LoRAConfig, error) {
	path := filepath.Join(dir, AdapterConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return LoRAConfig{}, fmt.Errorf("model: %w", err)
	}
	var ac adapterConfig
	if err := json.Unmarshal(b, &ac); err != nil {
		return LoRAConfig{}, fmt.Errorf("model: %s: %w", path, err)
	}
	if ac.PeftType != "LORA" {
		return LoRAConfig{}, fmt.Errorf("model: %s: peft_type %q (want LORA)", path, ac.PeftType)
	}
	if ac.UseDoRA || ac.UseRSLoRA || ac.FanInFanOut {
		return LoRAConfig{}, fmt.Errorf("model: %s: use_dora, use_rslora and fan_in_fan_out are not supported", path)
	}
	if ac.Bias != "" && ac.Bias != "none" {
		return LoRAConfig{}, fmt.Errorf("model: %s: bias %q (want none)", path, ac.Bias)
	}
	lc := LoRAConfig{Rank: ac.R, Alpha: ac.LoraAlpha, Targets: ac.TargetModules}
	if err := lc.Validate(); err != nil {
		return LoRAConfig{}, fmt.Errorf("model: %s: %w", path, err)
	}
	return lc, nil
}

// LoadLoRA attaches the PEFT adapters of dir to m: every tensor of the layout its config implies must be
// present with its exact shape, and no other.
func (m *Model) LoadLoRA(dir string) (*Adapters, error) {
	lc, err := ReadLoRAConfig(dir)
	if err != nil {
		return nil, err
	}
	ad, err := m.newAdapters(lc)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, AdapterWeightsFile)
	if err := ad.Params.ReadSafetensors(path); err != nil {
		ad.free(m.dev)
		return nil, err
	}
	if err := ad.SyncWeights(); err != nil {
		ad.free(m.dev)
		return nil, err
	}
	ad.SourceDir = dir
	m.lora = ad
	return ad, nil
}

// ReadSafetensors fills the blob from a safetensors file holding exactly its tensors, by name.
func (b *Blob) ReadSafetensors(path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	known := map[string]bool{}
	var host []float32
	for i, s := range b.Layout.Specs {
		known[s.Name] = true
		info, ok := f.Tensor(s.Name)
		if !ok {
			return fmt.Errorf("model: %s: missing tensor %s (shape %v)", path, s.Name, s.Shape)
		}
		if !slices.Equal(info.Shape, s.Shape) {
			return fmt.Errorf("model: %s: tensor %s has shape %v, want %v", path, s.Name, info.Shape, s.Shape)
		}
		host = append(host[:0], make([]float32, s.Len)...)
		if err := f.Float32(s.Name, host); err != nil {
			return fmt.Errorf("model: %s: %w", path, err)
		}
		if err := kernels.Upload(b.View(i), host); err != nil {
			return err
		}
	}
	for _, name := range f.Names() {
		if !known[name] {
			return fmt.Errorf("model: %s: unexpected tensor %s", path, name)
		}
	}
	return nil
}

// LoadMerged loads the base model of dir in float32 (merging needs the master weights, whatever
// precision the adapters were trained at), attaches the PEFT adapters of adapter and folds them in
// (Merge): a plain model computing what base + adapters compute.
func LoadMerged(d *kernels.Device, dir, adapter string) (*Model, error) {
	m, err := LoadWith(d, dir, Options{Frozen: true})
	if err != nil {
		return nil, err
	}
	if _, err := m.LoadLoRA(adapter); err != nil {
		m.Free()
		return nil, err
	}
	if err := m.Merge(); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// Merge folds the adapters into the base weights, W += scale·B·A, and detaches them: the model then
// computes exactly what base + adapters computed, with no adapters. It needs the float32 master
// weights (load the base in f32 to merge).
func (m *Model) Merge() error {
	ad := m.lora
	if ad == nil {
		return fmt.Errorf("model: merge without adapters")
	}
	if m.Params == nil || m.Params.DType() != kernels.F32 {
		return fmt.Errorf("model: merge needs the float32 master weights")
	}
	pw := loraViews(ad.Params, m.Config)
	base := m.Params.tensors(m.Config)
	for l := range pw {
		lt := base.layers[l]
		ws := []kernels.Tensor{lt.wq, lt.wk, lt.wv, lt.wo, lt.wg, lt.wu, lt.wd}
		for i, pr := range pw[l].t {
			if !pr.a.Valid() {
				continue
			}
			if err := m.dev.MatMul(kernels.MatMul{A: pr.b, B: pr.a, C: ws[i], Alpha: ad.scale, Beta: 1}); err != nil {
				return fmt.Errorf("model: merge layer %d %s: %w", l, LoRATargets[i], err)
			}
		}
	}
	m.lora = nil
	ad.free(m.dev)
	return m.SyncWeights()
}

// loraGrads resolves a gradient blob of the adapter layout (resolved once per blob).
func (b *Blob) loraGrads(c Config) []loraLayer {
	if b.loraByName == nil {
		b.loraByName = loraViews(b, c)
	}
	return b.loraByName
}

// frozenGrads are the base model's gradient tensors under LoRA: none, but the RMSNorm weights', which
// the norm backward always writes, point at a sink.
func frozenGrads(c Config, sink kernels.Tensor) tensors {
	t := tensors{norm: sink, layers: make([]layerTensors, c.Layers)}
	for i := range t.layers {
		t.layers[i].ln1, t.layers[i].ln2 = sink, sink
	}
	return t
}
