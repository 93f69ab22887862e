package model

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/serl-go/serl/kernels"
)

// PlanItem is one allocation of a memory plan, in its dtype.
type PlanItem struct {
	Name  string
	DType kernels.DType
	Bytes int64
}

// Plan is what a run will allocate, computed from its settings before anything is: serl prints it at
// the start and refuses a plan that does not fit the device instead of failing halfway.
type Plan struct {
	Items []PlanItem
}

// Add appends items.
func (p *Plan) Add(items ...PlanItem) { p.Items = append(p.Items, items...) }

// Total is the sum of the items.
func (p Plan) Total() int64 {
	var t int64
	for _, it := range p.Items {
		t += it.Bytes
	}
	return t
}

// WeightsPlan is a model's weights in precision o: the float32 master weights (absent for a frozen
// bf16 model) and, under bf16, their bf16 copy. what names the model ("parameters", "reference").
func (c Config) WeightsPlan(what string, o Options) []PlanItem {
	l := NewLayout(c)
	var items []PlanItem
	if o.keepsMaster() {
		items = append(items, PlanItem{what + " (master)", kernels.F32, l.Bytes(kernels.F32)})
	}
	if o.hasCopy() {
		items = append(items, PlanItem{what + " (bf16 copy the ops read)", kernels.BF16, l.Bytes(kernels.BF16)})
	}
	if len(items) == 1 {
		items[0].Name = what
	}
	if !o.keepsMaster() {
		items = append(items, PlanItem{what + ": RMSNorm weights", kernels.F32, int64(max(normLen(l), 1)) * int64(kernels.F32.Size())})
	}
	return append(items, PlanItem{what + ": rotary frequencies", kernels.F32, int64(c.HeadDim/2) * int64(kernels.F32.Size())})
}

// OptimizerPlan is training state beside the weights: the gradients and both AdamW moments, float32
// in every precision.
func (c Config) OptimizerPlan() []PlanItem {
	b := NewLayout(c).Bytes(kernels.F32)
	return []PlanItem{{"gradients", kernels.F32, b}, {"AdamW first moment", kernels.F32, b}, {"AdamW second moment", kernels.F32, b},
		{"gradient norm", kernels.F32, int64(kernels.F32.Size())}}
}

// LoRAPlan is the adapters of lc on this configuration and their training state: float32 master
// weights, under bf16 their bf16 copy, and float32 gradients and AdamW moments — of the adapters only.
func (c Config) LoRAPlan(lc LoRAConfig, p Precision) []PlanItem {
	return append(c.LoRAWeightsPlan(lc, p), c.LoRAOptimizerPlan(lc)...)
}

// LoRAWeightsPlan is the adapters: float32 master weights and, under bf16, the bf16 copy the ops read.
func (c Config) LoRAWeightsPlan(lc LoRAConfig, p Precision) []PlanItem {
	l := NewLoRALayout(c, lc)
	items := []PlanItem{{fmt.Sprintf("LoRA adapters, rank %d (master)", lc.Rank), kernels.F32, l.Bytes(kernels.F32)}}
	if p == PrecisionBF16 {
		items = append(items, PlanItem{"LoRA adapters (bf16 copy the ops read)", kernels.BF16, l.Bytes(kernels.BF16)})
	}
	return items
}

// LoRAOptimizerPlan is the adapters' gradients and AdamW moments, float32 in every precision.
func (c Config) LoRAOptimizerPlan(lc LoRAConfig) []PlanItem {
	b := NewLoRALayout(c, lc).Bytes(kernels.F32)
	return []PlanItem{{"LoRA gradients", kernels.F32, b}, {"LoRA AdamW first moment", kernels.F32, b},
		{"LoRA AdamW second moment", kernels.F32, b}, {"gradient norm", kernels.F32, int64(kernels.F32.Size())}}
}

// LoRAWorkspacePlan is the adapters' scratch in a generation workspace of maxTokens tokens.
func (c Config) LoRAWorkspacePlan(name string, lc LoRAConfig, maxTokens int, p Precision) PlanItem {
	return PlanItem{name + ": LoRA scratch", p.Act(), int64((maxTokens*lc.scratchCols()+15)&^15) * int64(p.Act().Size())}
}

// ActivationPlan is the training arena for maxTokens tokens in maxSeqs sequences at precision p, one
// item per dtype (activations, float32 statistics, int32 indices).
func (c Config) ActivationPlan(maxTokens, maxSeqs int, p Precision) []PlanItem {
	return c.LoRAActivationPlan(maxTokens, maxSeqs, p, nil)
}

// LoRAActivationPlan is ActivationPlan with the adapter activations of lc (none when nil).
func (c Config) LoRAActivationPlan(maxTokens, maxSeqs int, p Precision, lc *LoRAConfig) []PlanItem {
	var a Activations
	return slotItems(fmt.Sprintf("activations (%d tokens, %d sequences)", maxTokens, maxSeqs),
		c.activationSlots(&a, maxTokens, maxSeqs, p.Act(), lc))
}

// WorkspacePlan is a generation workspace (see NewWorkspace), one item per dtype.
func (c Config) WorkspacePlan(name string, maxTokens, maxSeqs, maxBlocks int, p Precision) []PlanItem {
	var ws Workspace
	return slotItems(name, c.workspaceSlots(&ws, maxTokens, maxSeqs, maxBlocks, p.Act()))
}

// KVCachePlan is a KV cache of numBlocks blocks of blockSize tokens.
func (c Config) KVCachePlan(name string, numBlocks, blockSize int, p Precision) PlanItem {
	return PlanItem{fmt.Sprintf("%s (%d blocks of %d tokens)", name, numBlocks, blockSize), p.Act(), c.KVCacheBytes(numBlocks, blockSize, p)}
}

func slotItems(name string, slots []arenaSlot) []PlanItem {
	by, _ := arenaBytes(slots)
	var items []PlanItem
	for _, dt := range arenaDTypes(slots) {
		items = append(items, PlanItem{name, dt, by[dt]})
	}
	return items
}

// TrainingPlan is the memory of training this configuration at precision p on micro-batches of
// batchTokens tokens in up to maxSeqs sequences: the weights, gradients, both AdamW moments, the
// activation arena and, when reference is set, the frozen reference weights used by RL's KL term.
func (c Config) TrainingPlan(batchTokens, maxSeqs int, reference bool, p Precision) Plan {
	var pl Plan
	pl.Add(c.WeightsPlan("parameters", Options{Precision: p})...)
	pl.Add(c.OptimizerPlan()...)
	if reference {
		pl.Add(c.WeightsPlan("reference parameters", Options{Precision: p, Frozen: true})...)
	}
	pl.Add(c.ActivationPlan(batchTokens, maxSeqs, p)...)
	return pl
}

// Check refuses a plan larger than the memory available, naming both figures.
func (p Plan) Check(available int64) error {
	if t := p.Total(); t > available {
		return fmt.Errorf("memory plan needs %s but the device has %s available", human(t), human(available))
	}
	return nil
}

// Write prints the plan as a table.
func (p Plan) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, it := range p.Items {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t(%d bytes)\n", it.Name, it.DType, human(it.Bytes), it.Bytes)
	}
	fmt.Fprintf(tw, "  total\t\t%s\t(%d bytes)\n", human(p.Total()), p.Total())
	return tw.Flush()
}

func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
