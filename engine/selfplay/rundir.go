package selfplay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/internal/atomicfile"

	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/kernels"
)

func reasonName(i int) string { return selfinstruct.Reason(i).String() }

// runDir is a run's directory: config.json, metrics.jsonl, the data files of SERL.md §1.6, per-iteration
// evaluations and models, and the checkpoint of the last step.
type runDir struct {
	path string
	err  error // first failure of a best-effort append (metrics); reported by the next checkpoint
}

func (d *runDir) file(name string) string { return filepath.Join(d.path, name) }

// writeJSON writes a file atomically (temporary file, rename).
func (d *runDir) writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(d.file(name), append(b, '\n'))
}

// writeAtomic is atomicfile.WriteFile: never a half-written file.
func writeAtomic(path string, data []byte) error { return atomicfile.WriteFile(path, data) }

// appendProblems appends {"idx","prompt"} lines, as the official filtered/expired/keep_train files.
func (d *runDir) appendProblems(name string, groups []Group) error {
	if len(groups) == 0 {
		return nil
	}
	f, err := os.OpenFile(d.file(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, g := range groups {
		b, _ := json.Marshal(map[string]any{"idx": g.Problem.ID, "prompt": g.Problem.Text, "share": g.Share})
		w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// MetricsFile is the run directory's per-step log: one StepMetrics JSON object per line.
const MetricsFile = "metrics.jsonl"

// ReadMetrics reads a run directory's metrics.jsonl.
func ReadMetrics(dir string) ([]StepMetrics, error) {
	path := filepath.Join(dir, MetricsFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []StepMetrics
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var m StepMetrics
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

func (d *runDir) appendMetrics(m *StepMetrics) {
	f, err := os.OpenFile(d.file(MetricsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		b, _ := json.Marshal(m)
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("selfplay: metrics.jsonl: %w", err)
	}
}

func uploadF32(t kernels.Tensor, host []float32) error { return kernels.Upload(t, host) }
