package pretrain

import (
	"fmt"
	"path/filepath"

	"github.com/serl-go/serl/engine/chart"
)

// PassChartFile is the chart of held-out pass@1 per level, beside ChartFile's loss curve.
const PassChartFile = "heldout_pass1.png"

// chart draws the training loss and, in a second file, held-out pass@1 (in %) overall and per level,
// which live on scales too different to share an axis.
func (m *metrics) chart(lossPath string) error {
	loss := chart.Series{Name: "loss"}
	overall := chart.Series{Name: "all"}
	levels := map[int]*chart.Series{}
	var order []int
	for _, l := range m.lines {
		if l.Eval == nil {
			loss.X = append(loss.X, float64(l.Step))
			loss.Y = append(loss.Y, l.Loss)
			continue
		}
		overall.X = append(overall.X, float64(l.Step))
		overall.Y = append(overall.Y, 100*l.Eval.Overall.Pass1)
		for _, ls := range l.Eval.Levels {
			s := levels[ls.Level]
			if s == nil {
				s = &chart.Series{Name: fmt.Sprintf("level %d", ls.Level)}
				levels[ls.Level] = s
				order = append(order, ls.Level)
			}
			s.X = append(s.X, float64(l.Step))
			s.Y = append(s.Y, 100*ls.Pass1)
		}
	}
	if err := (chart.Chart{Title: "training loss (assistant tokens)", XLabel: "step", Series: []chart.Series{loss}}).WritePNG(lossPath); err != nil {
		return err
	}
	pass := chart.Chart{Title: "held-out pass@1 (%)", XLabel: "step", Series: []chart.Series{overall}}
	for _, l := range order {
		pass.Series = append(pass.Series, *levels[l])
	}
	return pass.WritePNG(filepath.Join(filepath.Dir(lossPath), PassChartFile))
}
