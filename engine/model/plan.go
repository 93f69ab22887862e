package model

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// PlanItem is one allocation of a memory plan.
type PlanItem struct {
	Name  string
	Bytes int64
}

// Plan is what a run will allocate, computed before anything is: serl prints it at the start and
// refuses a plan that does not fit the device instead of failing halfway.
type Plan struct {
	Items []PlanItem
}

// Total is the sum of the items.
func (p Plan) Total() int64 {
	var t int64
	for _, it := range p.Items {
		t += it.Bytes
	}
	return t
}

// TrainingPlan is the memory of training this configuration on micro-batches of batchTokens tokens in
// up to maxSeqs sequences: parameters, gradients, both AdamW moments, the activation arena and, when
// reference is set, the frozen reference copy of the weights used by RL's KL term.
func (c Config) TrainingPlan(batchTokens, maxSeqs int, reference bool) Plan {
	blob := 4 * int64(NewLayout(c).Total)
	items := []PlanItem{
		{"parameters", blob},
		{"gradients", blob},
		{"AdamW first moment", blob},
		{"AdamW second moment", blob},
	}
	if reference {
		items = append(items, PlanItem{"reference parameters", blob})
	}
	items = append(items, PlanItem{fmt.Sprintf("activations (%d tokens, %d sequences)", batchTokens, maxSeqs), c.ActivationBytes(batchTokens, maxSeqs)})
	return Plan{Items: items}
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
		fmt.Fprintf(tw, "  %s\t%s\t(%d bytes)\n", it.Name, human(it.Bytes), it.Bytes)
	}
	fmt.Fprintf(tw, "  total\t%s\t(%d bytes)\n", human(p.Total()), p.Total())
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
