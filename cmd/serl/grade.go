package main

import (
	"fmt"
	"io"
	"os"

	"github.com/serl-go/serl/engine/mathans"
	"github.com/serl-go/serl/engine/reward"
)

func init() {
	addCommand(command{name: "grade", summary: "judge math answers: 1 if equivalent, else 0", run: runGrade})
}

func runGrade(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grade", stderr)
	gold := fs.String("gold", "", "gold answer (bare LaTeX, $…$ or \\boxed{…})")
	pred := fs.String("pred", "", "predicted answer, bare like --gold (\\frac12, 1/2) or a whole response (its \\boxed{}, $…$, answer sentence or, in prose, last number)")
	in := fs.String("in", "", `JSONL file of {"gold":…,"pred":…} lines ("-" for stdin); one verdict per line`)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *in != "" && (*gold != "" || *pred != ""):
		return usagef("--in excludes --gold and --pred")
	case *in != "":
		r := io.Reader(os.Stdin)
		if *in != "-" {
			f, err := os.Open(*in)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		if err := reward.GradeLines(r, stdout); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		return nil
	case *gold == "" || *pred == "":
		return usagef("give --gold and --pred, or --in FILE.jsonl")
	}
	if mathans.Same(mathans.ParseGold(*gold), mathans.ParseAnswer(*pred)) {
		fmt.Fprintln(stdout, 1)
	} else {
		fmt.Fprintln(stdout, 0)
	}
	return nil
}
