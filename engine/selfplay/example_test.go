package selfplay_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// Running a few steps of the SeRL loop's majority-vote mode through the Go API, with a callback per
// step — what a server hosting serl does without the CLI.
func Example() {
	dev, err := kernels.Open("cpu", 0)
	if err != nil {
		log.Fatal(err)
	}
	load := func() *model.Model {
		m, err := model.Load(dev, "../model/testdata/llama_f32")
		if err != nil {
			log.Fatal(err)
		}
		return m
	}
	policy, ref := load(), load()
	defer policy.Free()
	defer ref.Free()
	corpus := func(yield func(string) bool) {
		for i := 0; i < 50; i++ {
			if !yield(fmt.Sprintf("What is %d plus %d?", i, i)) {
				return
			}
		}
	}
	tok, err := tokenizer.Train(corpus, 300, tokenizer.TrainOptions{SpecialTokens: []string{"<|endoftext|>"}})
	if err != nil {
		log.Fatal(err)
	}
	var problems []selfplay.Problem
	for i := 0; i < 8; i++ {
		problems = append(problems, selfplay.Problem{ID: i, Text: fmt.Sprintf("What is %d plus %d?", i, i)})
	}
	cfg := selfplay.DefaultConfig()
	cfg.Mode, cfg.Algorithm = selfplay.ModeMaj, rl.RLOO
	cfg.Iterations, cfg.InstructionsPerIteration, cfg.RolloutBatch, cfg.Samples, cfg.TrainBatch = 1, 4, 2, 4, 4
	cfg.MaxPromptTokens, cfg.MaxNewTokens, cfg.LR = 32, 8, 1e-4
	dir, err := os.MkdirTemp("", "serl-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	r, err := selfplay.Start(filepath.Join(dir, "run"), cfg, selfplay.Inputs{Policy: policy, Reference: ref, Tokenizer: tok, Train: problems})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Free()
	err = r.Run(context.Background(), func(m selfplay.StepMetrics) {
		fmt.Printf("step %d of iteration %d: %d groups trained\n", m.Step, m.Iteration, cfg.RolloutBatch)
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// step 1 of iteration 1: 2 groups trained
	// step 2 of iteration 1: 2 groups trained
}
