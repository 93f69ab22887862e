package pretrain

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/serl-go/serl/internal/atomicfile"

	"github.com/serl-go/serl/engine/evaluate"
)

// state is what a resumed run needs besides the weights and moments (engine/checkpoint keeps all
// three): documents are a function of (seed, index), so the data position is one counter.
type state struct {
	Step    int     `json:"step"`
	NextDoc uint64  `json:"next_doc"`
	Tokens  int64   `json:"tokens"`
	Seconds float64 `json:"train_seconds"`
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

// writeAtomic is atomicfile.WriteFile: never a half-written file.
func writeAtomic(path string, data []byte) error { return atomicfile.WriteFile(path, data) }

func readConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c := DefaultConfig()
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// metricLine is one line of metrics.jsonl: a training step, or an evaluation (Eval set).
type metricLine struct {
	Step         int              `json:"step"`
	Loss         float64          `json:"loss,omitempty"`
	LR           float64          `json:"lr,omitempty"`
	GradNorm     float64          `json:"grad_norm,omitempty"`
	Tokens       int              `json:"tokens,omitempty"`
	Targets      int              `json:"targets,omitempty"`
	TokensPerSec float64          `json:"tokens_per_s,omitempty"`
	TotalTokens  int64            `json:"total_tokens,omitempty"`
	TrainSeconds float64          `json:"train_seconds,omitempty"`
	Eval         *evaluate.Report `json:"eval,omitempty"`
}

type metrics struct {
	f     *os.File
	lines []metricLine
}

// openMetrics opens metrics.jsonl; on resume it keeps the lines up to the checkpoint's step (a run
// killed after its checkpoint may have logged steps that will now be redone).
func openMetrics(path string, upTo int, resume bool) (*metrics, error) {
	m := &metrics{}
	if resume {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
			for sc.Scan() {
				var l metricLine
				if json.Unmarshal(sc.Bytes(), &l) == nil && l.Step <= upTo {
					m.lines = append(m.lines, l)
				}
			}
			f.Close()
		}
	}
	var buf []byte
	for _, l := range m.lines {
		b, _ := json.Marshal(l)
		buf = append(append(buf, b...), '\n')
	}
	if err := writeAtomic(path, buf); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	m.f = f
	return m, nil
}

func (m *metrics) write(l metricLine) error {
	m.lines = append(m.lines, l)
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = m.f.Write(append(b, '\n'))
	return err
}

func (m *metrics) step(e Event, st state) error {
	return m.write(metricLine{Step: e.Step, Loss: e.Loss, LR: e.LR, GradNorm: e.Grad, Tokens: e.Tokens,
		Targets: e.Targets, TokensPerSec: e.TokensPerSec, TotalTokens: st.Tokens, TrainSeconds: st.Seconds})
}

func (m *metrics) eval(step int, rep evaluate.Report) error {
	return m.write(metricLine{Step: step, Eval: &rep})
}

func (m *metrics) Close() error { return m.f.Close() }
