// Command results turns the run directories of bench/results.sh into the README's results table:
// one row per setting and iteration, each cell the mean over seeds ± their standard deviation.
//
//	go run ./tools/results runs/results
//
// Run directories are named <setting>_s<seed>; each holds eval_iter<k>.json (serl train --eval).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

// report mirrors the fields of evaluate.Report the table needs.
type report struct {
	K       int   `json:"k"`
	Overall score `json:"overall"`
	Levels  []struct {
		Level int `json:"level"`
		score
	} `json:"levels"`
}

type score struct {
	N     int     `json:"n"`
	Pass1 float64 `json:"pass@1"`
	Maj   float64 `json:"maj@k"`
}

// settings in table order: the run-directory prefix and the row label.
var settings = []struct{ dir, label string }{
	{"serl_reinforce++", "SeRL reinforce++ (100 seeds)"},
	{"serl_grpo", "SeRL grpo (100 seeds)"},
	{"serl_rloo", "SeRL rloo (100 seeds)"},
	{"gt7500", "gt, 7,500 labelled"},
	{"maj7500", "maj, 7,500 unlabelled"},
	{"gt100", "gt, the 100 seeds only"},
}

var runName = regexp.MustCompile(`^(.+)_s(\d+)$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: results RUNS_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}

func run(root string, w io.Writer) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	// evals[setting][iteration] = one report per seed
	evals := map[string]map[int][]report{}
	seeds := map[string][]int{}
	for _, e := range entries {
		m := runName.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			continue
		}
		seed, _ := strconv.Atoi(m[2])
		seeds[m[1]] = append(seeds[m[1]], seed)
		for k := 0; ; k++ {
			b, err := os.ReadFile(filepath.Join(root, e.Name(), fmt.Sprintf("eval_iter%d.json", k)))
			if err != nil {
				break
			}
			var r report
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(root, e.Name(), fmt.Sprintf("eval_iter%d.json", k)), err)
			}
			if evals[m[1]] == nil {
				evals[m[1]] = map[int][]report{}
			}
			evals[m[1]][k] = append(evals[m[1]][k], r)
		}
	}
	levels := []int{}
	var k int
	for _, s := range settings {
		for _, rs := range evals[s.dir] {
			for _, r := range rs {
				k = max(k, r.K) // some evaluations are greedy only (k 0)
				for _, l := range r.Levels {
					if !slices.Contains(levels, l.Level) {
						levels = append(levels, l.Level)
					}
				}
			}
		}
	}
	slices.Sort(levels)
	head := "| setting | seeds | overall pass@1 | overall maj@" + strconv.Itoa(k) + " |"
	sep := "|---|---|---|---|"
	for _, l := range levels {
		head += fmt.Sprintf(" L%d pass@1 / maj@%d |", l, k)
		sep += "---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	row := func(label string, rs []report, nSeeds int) {
		line := fmt.Sprintf("| %s | %d | %s | %s |", label, nSeeds,
			cell(rs, func(r report) (float64, bool) { return r.Overall.Pass1, true }),
			cell(rs, func(r report) (float64, bool) { return r.Overall.Maj, r.K > 0 }))
		for _, l := range levels {
			get := func(maj bool) func(r report) (float64, bool) {
				return func(r report) (float64, bool) {
					for _, x := range r.Levels {
						if x.Level == l {
							if maj {
								return x.Maj, r.K > 0
							}
							return x.Pass1, true
						}
					}
					return 0, false
				}
			}
			line += fmt.Sprintf(" %s / %s |", cell(rs, get(false)), cell(rs, get(true)))
		}
		fmt.Fprintln(w, line)
	}
	// The base model: every run's evaluation before training (the same model, each seed's samples).
	if base := evals[settings[0].dir][0]; len(base) > 0 {
		row("base model", base, len(base))
	}
	for _, s := range settings {
		its := make([]int, 0, len(evals[s.dir]))
		for it := range evals[s.dir] {
			if it > 0 {
				its = append(its, it)
			}
		}
		slices.Sort(its)
		for _, it := range its {
			row(fmt.Sprintf("%s, iteration %d", s.label, it), evals[s.dir][it], len(evals[s.dir][it]))
		}
	}
	return nil
}

// cell is the mean over seeds in percent ± the sample standard deviation (— where no seed has it).
func cell(rs []report, get func(report) (float64, bool)) string {
	var xs []float64
	for _, r := range rs {
		if v, ok := get(r); ok {
			xs = append(xs, 100*v)
		}
	}
	if len(xs) == 0 {
		return "—"
	}
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) == 1 {
		return fmt.Sprintf("%.1f", mean)
	}
	v := 0.0
	for _, x := range xs {
		v += (x - mean) * (x - mean)
	}
	return fmt.Sprintf("%.1f ±%.1f", mean, math.Sqrt(v/float64(len(xs)-1)))
}
