package builtin_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/mathans"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/engine/task/arith"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// serl as a library, the way a server hosts it without the CLI: load the built-in model, answer a
// problem, grade the answer, then run SeRL steps with a callback after each one.
func Example() {
	dev, err := kernels.Open("cpu", 0)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := builtin.ModelDir() // unpacked from the binary on first use
	if err != nil {
		log.Fatal(err)
	}
	policy, err := model.Load(dev, dir)
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Free()
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		log.Fatal(err)
	}
	cc, err := chat.LoadTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		log.Fatal(err)
	}
	tmpl, err := cc.Template()
	if err != nil {
		log.Fatal(err)
	}

	// Generate: one greedy answer in the chat format, stopped at the end-of-turn token.
	problem := arith.EvalSet()[0]
	text, err := tmpl.Render([]chat.Message{{Role: "system", Content: evaluate.SystemPrompt},
		{Role: "user", Content: problem.Problem}}, cc.Options(true))
	if err != nil {
		log.Fatal(err)
	}
	eng, err := generate.New(policy, generate.Config{BlockSize: 16, NumBlocks: 64, MaxBatch: 4, MaxPrefillTokens: 512, MaxSeqLen: 512})
	if err != nil {
		log.Fatal(err)
	}
	out, err := eng.Generate([]generate.Request{{Prompt: tok.Encode(text, tokenizer.EncodeOptions{ParseSpecial: true}), N: 1,
		Params: generate.Params{MaxNewTokens: 200, StopIDs: evaluate.StopIDs(policy.Config, tok)}}}, nil, nil)
	eng.Free()
	if err != nil {
		log.Fatal(err)
	}
	answer, err := tok.Decode(out[0][0].Tokens, true)
	if err != nil {
		log.Fatal(err)
	}
	// Grade: extract the boxed answer and compare it with the label by value.
	fmt.Println("boxed answer:", strings.Contains(answer, `\boxed{`))
	fmt.Println("correct:", mathans.Equivalent(problem.Answer, answer))

	// SeRL: self-instruction from the seeds, majority-vote rewards, Reinforce++; a callback per step.
	ref, err := model.Load(dev, dir) // the frozen reference of the KL term
	if err != nil {
		log.Fatal(err)
	}
	defer ref.Free()
	var seeds []selfplay.Problem
	for i, p := range arith.SeedSet() {
		seeds = append(seeds, selfplay.Problem{ID: i, Text: p.Problem, Level: p.Level})
	}
	cfg := builtin.SelfPlayConfig()
	cfg.Iterations, cfg.InstructionsPerIteration, cfg.RolloutBatch, cfg.Samples, cfg.TrainBatch = 1, 8, 4, 4, 8
	cfg.GenPrompts, cfg.DifficultyLow, cfg.DifficultyHigh = 2, 0.25, 1
	run, err := os.MkdirTemp("", "serl-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(run)
	r, err := selfplay.Start(filepath.Join(run, "run"), cfg, selfplay.Inputs{Policy: policy, Reference: ref,
		Tokenizer: tok, Chat: tmpl, ChatOpts: cc.Options(true), Seeds: seeds})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Free()
	err = r.Run(context.Background(), func(m selfplay.StepMetrics) {
		fmt.Printf("step %d: trained on %d groups of %d samples\n", m.Step, cfg.RolloutBatch, cfg.Samples)
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// boxed answer: true
	// correct: true
	// step 1: trained on 4 groups of 4 samples
	// step 2: trained on 4 groups of 4 samples
}
