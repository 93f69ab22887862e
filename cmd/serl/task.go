package main

import (
	"bufio"
	"io"

	"github.com/serl-go/serl/engine/task/arith"
)

func init() {
	addCommand(command{name: "task", summary: "the built-in world of arithmetic word problems: serl task sample", run: runTask})
}

func runTask(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "sample" {
		return usagef("usage: serl task sample [--n N] [--level 1..5] [--seed S] [--json]")
	}
	fs := newFlags("task sample", stderr)
	n := fs.Int("n", 5, "problems to print")
	level := fs.Int("level", 0, "difficulty level 1..5 (0: all levels in turn)")
	seed := fs.Int64("seed", 1, "generator seed (same seed, same problems)")
	asJSON := fs.Bool("json", false, "SeRL JSONL records (problem, answer, solution, level, unique_id)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *n < 1 || *level < 0 || *level > arith.Levels {
		return usagef("want --n ≥ 1 and --level in 0..%d", arith.Levels)
	}
	w := bufio.NewWriter(stdout)
	if err := arith.WriteSample(w, *seed, *n, *level, *asJSON); err != nil {
		return err
	}
	return w.Flush()
}
