package selfplay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/serl-go/serl/engine/checkpoint"
	"github.com/serl-go/serl/internal/atomicfile"

	"github.com/serl-go/serl/engine/selfinstruct"
)

func reasonName(i int) string { return selfinstruct.Reason(i).String() }

// runDir is a run's directory: config.json, metrics.jsonl, the filtered/expired/kept data files, the
// per-iteration evaluations and models, and the checkpoint of the last step (docs/RUNDIR.md).
type runDir struct {
	path     string
	lock     *checkpoint.Lock
	err      error           // first failure of a best-effort append (metrics); reported by the next checkpoint
	appended map[string]bool // records appended since the last checkpoint, synced before the next
	// follower: a rank other than 0 of a data-parallel run; it reads the directory (to resume) and
	// writes nothing, its state being rank 0's.
	follower bool
}

func (d *runDir) file(name string) string { return filepath.Join(d.path, name) }

// writeJSON writes a file atomically (temporary file, rename).
func (d *runDir) writeJSON(name string, v any) error {
	if d.follower {
		return nil
	}
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
	if len(groups) == 0 || d.follower {
		return nil
	}
	f, err := d.openAppend(name)
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
	if d.follower {
		return
	}
	f, err := d.openAppend(MetricsFile)
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

func (d *runDir) openAppend(name string) (*os.File, error) {
	if d.appended == nil {
		d.appended = map[string]bool{}
	}
	d.appended[name] = true
	return os.OpenFile(d.file(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
}

// syncRecords makes the records appended since the last checkpoint durable before the next one, so a
// checkpoint never runs ahead of the records of the steps it contains.
func (d *runDir) syncRecords() error {
	for name := range d.appended {
		f, err := os.OpenFile(d.file(name), os.O_WRONLY, 0)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("selfplay: %w", err)
		}
	}
	d.appended = nil
	return nil
}

// recordRE matches the files written per step and per iteration boundary, with the number that orders
// them: the data files carry the step count of the ticks that wrote them, eval_iter<k>.json and iter<k>/
// the iteration boundary.
var recordRE = regexp.MustCompile(`^(?:(filtered_data|expired_data|keep_train_data)_([0-9]+)\.jsonl|eval_iter([0-9]+)\.json|iter([0-9]+))$`)

// cutBack makes the records those of the checkpointed state st, before anything is appended: metrics
// lines of later steps, data files of ticks after the checkpoint, and evaluations and iteration models
// of boundaries it has not passed are removed. The resumed run writes them again exactly as the
// uninterrupted run wrote them once.
func (d *runDir) cutBack(st State) error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("selfplay: %w", err)
	}
	for _, e := range entries {
		m := recordRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		var stale bool
		switch {
		case m[2] != "":
			n, _ := strconv.Atoi(m[2])
			stale = n >= st.Steps // written by ticks after the checkpoint
		case m[3] != "":
			k, _ := strconv.Atoi(m[3])
			stale = k >= st.Evaluated
		default:
			k, _ := strconv.Atoi(m[4])
			stale = k >= st.Evaluated
		}
		if stale {
			if err := os.RemoveAll(d.file(e.Name())); err != nil {
				return fmt.Errorf("selfplay: %w", err)
			}
		}
	}
	return d.cutMetrics(st.Steps)
}

// cutMetrics keeps the metrics lines of steps up to steps. A last line cut short by a kill is dropped;
// any other unreadable line is an error naming it.
func (d *runDir) cutMetrics(steps int) error {
	path := d.file(MetricsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("selfplay: %w", err)
	}
	var out []byte
	for line := 1; len(b) > 0; line++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // unterminated: the kill came in the middle of the append
		}
		var m struct {
			Step *int `json:"step"`
		}
		if err := json.Unmarshal(b[:i], &m); err != nil || m.Step == nil {
			return fmt.Errorf("selfplay: %s:%d: not a metrics line: %q", path, line, b[:min(i, 80)])
		}
		if *m.Step <= steps {
			out = append(out, b[:i+1]...)
		}
		b = b[i+1:]
	}
	return writeAtomic(path, out)
}
