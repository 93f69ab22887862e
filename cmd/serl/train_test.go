package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// tinyModelDir is the Llama fixture (vocab 300) with a byte-level tokenizer serl trains to that size,
// so the whole CLI path runs: tokenizer, chat template, model, data files.
func tinyModelDir(t *testing.T) string {
	dir := t.TempDir()
	src := fixtureDir(t, "llama_f32")
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	corpus := func(yield func(string) bool) {
		for i := 0; i < 100; i++ {
			if !yield(fmt.Sprintf("Ann has %d pens and gets %d more. How many pens? %d", i, i%5, i+i%5)) {
				return
			}
		}
	}
	tok, err := tokenizer.Train(corpus, 300, tokenizer.TrainOptions{SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}})
	require.NoError(t, err)
	require.NoError(t, tok.Save(dir, tokenizer.Config{ChatTemplate: chat.ChatMLTemplate, EOSToken: "<|im_end|>", PadToken: "<|endoftext|>"}))
	return dir
}

func writeProblems(t *testing.T, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "{\"problem\":\"Ann has %d pens and gets 2 more. How many pens?\",\"answer\":\"%d\",\"level\":\"Level %d\"}\n", i, i+2, 1+i%3)
	}
	p := filepath.Join(t.TempDir(), "data.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

func TestTrainCLIAndResume(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	run := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--device", "cpu", "--model", dir, "--mode", "gt", "--algorithm", "grpo", "--data", data,
		"--eval", data, "--eval-k", "2", "--eval-k-before=false", "--eval-max-new-tokens", "6", "--iterations", "2", "--instructions-per-iteration", "2",
		"--rollout-batch", "2", "--samples", "2", "--train-batch", "2", "--max-new-tokens", "8", "--max-prompt-tokens", "40",
		"--lr", "1e-3", "--run", run}
	code, out, errs := runCLI(t, args...)
	require.Equal(t, 0, code, errs)
	require.Equal(t, run+"\n", out)
	require.Contains(t, errs, "memory plan")
	require.Contains(t, errs, "step 2/2")
	for _, f := range []string{"metrics.jsonl", "reward.png", "kl.png", "loss.png", "accuracy.png", "eval_iter2.json", "iter1/tokenizer.json"} {
		require.FileExists(t, filepath.Join(run, f))
	}
	// maj@K at the end only: before training, greedy pass@1 alone (--eval-k-before=false).
	for it, k := range []int{0, 0, 2} {
		var rep struct{ K int }
		b, err := os.ReadFile(filepath.Join(run, fmt.Sprintf("eval_iter%d.json", it)))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &rep))
		require.Equal(t, k, rep.K, "iteration %d", it)
	}
	// --plan with --resume: the run's plan, and nothing resumed or written.
	before, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	require.NoError(t, err)
	code, out, errs = runCLI(t, "train", "--device", "cpu", "--resume", run, "--plan")
	require.Equal(t, 0, code, errs)
	require.Empty(t, out)
	require.Contains(t, errs, "memory plan:")
	require.NotContains(t, errs, "resuming")
	after, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	require.NoError(t, err)
	require.Equal(t, before, after)
	// Resuming a finished run has nothing left to do.
	code, _, errs = runCLI(t, "train", "--device", "cpu", "--resume", run)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "resuming")
	require.Contains(t, errs, "the run had already finished its 2 steps")
	// A second start into the same directory is refused.
	code, _, errs = runCLI(t, args...)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "not empty")
}

// serl train --kl 0 loads no reference model, neither at the start nor on --resume: its memory plan
// has none, its estimate counts no reference pass, and its run directory still has reference/ (the
// initial model, for the tokenizer files and the record).
func TestTrainKLZeroHoldsNoReference(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 4)
	train := func(kl string) (run, errs string, live int64) {
		run = filepath.Join(t.TempDir(), "run")
		code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data, "--kl", kl,
			"--iterations", "1", "--instructions-per-iteration", "2", "--rollout-batch", "2", "--samples", "2", "--train-batch", "2",
			"--max-new-tokens", "4", "--max-prompt-tokens", "40", "--run", run)
		require.Equal(t, 0, code, errs)
		ms, err := selfplay.ReadMetrics(run)
		require.NoError(t, err)
		return run, errs, ms[0].DeviceBytes
	}
	_, _, withRef := train("1e-3")
	run, errs, live := train("0")
	plan := errs[strings.Index(errs, "memory plan:"):]
	require.Contains(t, plan, "policy")
	require.NotContains(t, plan, "reference")
	require.Contains(t, errs, "trained tokens at 8·params")
	mc, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	var refBytes int64
	for _, it := range mc.WeightsPlan("reference", model.Options{Frozen: true}) {
		refBytes += it.Bytes
	}
	require.Equal(t, withRef-refBytes, live, "the run holds the policy's weights alone")
	require.FileExists(t, filepath.Join(run, "reference", "model.safetensors"))
	require.FileExists(t, filepath.Join(run, "reference", "tokenizer.json"))
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--resume", run, "--plan")
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "memory plan:")
	require.NotContains(t, errs[strings.Index(errs, "memory plan:"):], "reference")
}

func TestTrainCLIUsage(t *testing.T) {
	code, _, errs := runCLI(t, "train", "--algorithm", "ppo")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "algorithm")
	dir := tinyModelDir(t)
	code, _, errs = runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--data")
}

// With neither --model nor data files, serl train runs on the built-in model, seeds and held-out set,
// keeps copies of both in the run directory, prints the evaluation before and after, and resumes.
func TestTrainBuiltinDefaults(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--device", "cpu", "--iterations", "1", "--instructions-per-iteration", "4",
		"--rollout-batch", "4", "--samples", "2", "--train-batch", "8", "--difficulty-low", "0", "--difficulty-high", "1",
		"--eval-limit", "5", "--max-new-tokens", "48", "--instr-max-new-tokens", "96", "--run", run}
	code, out, errs := runCLI(t, args...)
	require.Equal(t, 0, code, errs)
	require.Equal(t, run+"\n", out)
	for _, want := range []string{"built-in model", "settings: {", `"prompt_mode":"chat"`, "step 1/1", "before → after 1 iterations", "overall", "time over steps 1–1: generation", "memory, step 1 → 1"} {
		require.Contains(t, errs, want)
	}
	seeds, err := os.ReadFile(filepath.Join(run, "seeds.jsonl"))
	require.NoError(t, err)
	require.Equal(t, 100, strings.Count(string(seeds), "\n"))
	eval, err := os.ReadFile(filepath.Join(run, "eval.jsonl"))
	require.NoError(t, err)
	require.Equal(t, 500, strings.Count(string(eval), "\n"))
	code, _, errs = runCLI(t, "train", "--device", "cpu", "--resume", run)
	require.Equal(t, 0, code, errs)
}

// --plan prints the memory plan, with the decode batch fitted to free memory (--max-batch 0), and stops
// before any model is loaded or the run directory made.
func TestTrainPlanWritesNothing(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	run := filepath.Join(t.TempDir(), "run")
	code, out, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data, "--eval", data,
		"--max-batch", "0", "--plan", "--run", run)
	require.Equal(t, 0, code, errs)
	require.Empty(t, out)
	require.Regexp(t, `--max-batch \d+: the largest decode batch`, errs)
	for _, want := range []string{"memory plan:", "generation: KV cache", "evaluation: KV cache", "total"} {
		require.Contains(t, errs, want)
	}
	require.NotContains(t, errs, "step 1/")
	require.NoDirExists(t, run)
}

// A plan that does not fit the device is refused before anything is allocated or created: the plan is
// printed, no run directory appears, and the device holds no bytes.
func TestTrainRefusesAPlanThatDoesNotFit(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	run := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data, "--eval", data,
		"--max-batch", "1000000000", "--run", run)
	require.Equal(t, 1, code, errs)
	for _, want := range []string{"memory plan:", "generation: KV cache", "evaluation: KV cache", "total", "memory plan needs"} {
		require.Contains(t, errs, want)
	}
	require.NoDirExists(t, run)

	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	cfg := selfplay.DefaultConfig()
	cfg.Mode, cfg.MaxBatch = selfplay.ModeGT, 1_000_000_000
	var log strings.Builder
	_, err = trainInputs(d, dist.Single(), dir, dir, trainFlags{Data: data, Eval: data}, &cfg, false, &log)
	require.ErrorContains(t, err, "memory plan needs")
	require.Contains(t, log.String(), "policy")
	live, peak := d.MemoryInUse()
	require.Zero(t, live)
	require.Zero(t, peak, "nothing was allocated")
}

// An evaluation whose longest prompt and response budget do not fit the model's context is settled
// before the run directory exists (it used to fail only at the first evaluation, inside the run): a
// budget asked for with --eval-max-new-tokens is refused, the default one is cut to the context and
// the cut is said.
func TestTrainEvaluationBudgetAndContext(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	run := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data, "--eval", data,
		"--eval-max-new-tokens", "100000", "--run", run)
	require.Equal(t, 2, code, errs)
	require.Contains(t, errs, "exceeds the model's context of 1024: set --eval-max-new-tokens ≤ 1008")
	require.NoDirExists(t, run)

	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	cfg := selfplay.DefaultConfig() // 1024 new tokens: with a 16-token prompt, past the fixture's context
	cfg.Mode = selfplay.ModeGT
	var log strings.Builder
	in, err := trainInputs(d, dist.Single(), dir, dir, trainFlags{Data: data, Eval: data}, &cfg, false, &log)
	require.NoError(t, err)
	defer in.Policy.Free()
	defer in.Reference.Free()
	require.Contains(t, log.String(), "evaluation responses get at most 1008 new tokens")
}

// --max-batch 0 (the default on a GPU): the decode batch is the largest whose whole plan fits in 90% of
// the free memory, at most the sequences a phase decodes at once; the choice is what the run keeps.
func TestTrainFitsTheDecodeBatchToFreeMemory(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	mc, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	cfg := selfplay.DefaultConfig()
	cfg.Mode = selfplay.ModeGT
	cfg.MaxNewTokens = 64
	plan := func(b int) (model.Plan, error) {
		c := cfg
		c.MaxBatch = b
		return trainPlan(mc, c, 16, 64)
	}
	p37, err := plan(37)
	require.NoError(t, err)
	for _, c := range []struct {
		budget     int64
		most, want int
	}{
		{p37.Total(), 1024, 37}, {p37.Total() + 1, 1024, 37}, {p37.Total() - 1, 1024, 36},
		{p37.Total(), 20, 20}, {1, 1024, 1}, // none fits: 1, and the plan's check says by how much
	} {
		got, err := fitMaxBatch(plan, c.most, c.budget)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "budget %d, at most %d", c.budget, c.most)
	}

	// Through trainInputs on the CPU, whose free memory holds far more than this tiny model needs: the
	// most sequences decoded at once, a step's rollouts (16 problems × 16 samples here).
	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	var log strings.Builder
	cfg.MaxBatch = 1
	in, err := trainInputs(d, dist.Single(), dir, dir, trainFlags{Data: data, Eval: data}, &cfg, true, &log)
	require.NoError(t, err)
	defer in.Policy.Free()
	defer in.Reference.Free()
	want := cfg.RolloutBatch * cfg.Samples
	require.Equal(t, want, cfg.MaxBatch)
	require.Contains(t, log.String(), fmt.Sprintf("--max-batch %d: the largest decode batch", want))
}

// A plan that does not fit names the largest training arena (--micro-batch-tokens) that would fit it,
// exactly: one token more does not fit. A plan no arena could save gets no such hint.
func TestMicroBatchHint(t *testing.T) {
	mc, err := model.LoadConfig(filepath.Join("..", "..", "bench", "qwen2.5-shapes", "qwen2.5-0.5B", "config.json"))
	require.NoError(t, err)
	cfg := selfplay.DefaultConfig()
	cfg.Precision = "bf16"
	plan := func(tokens int) model.Plan {
		c := cfg
		c.MicroBatchTokens = tokens
		p, err := trainPlan(mc, c, 512, 1024)
		require.NoError(t, err)
		return p
	}
	whole, one := plan(0).Total(), plan(2048).Total() // 16 sequences of 1024 + 1024 tokens; one of them
	for _, budget := range []int64{(whole + one) / 2, one} {
		hint, err := microBatchHint(mc, cfg, cfg.MaxBatch, 512, 1024, budget)
		require.NoError(t, err)
		var tokens, arena, batch int
		_, err = fmt.Sscanf(hint, "--micro-batch-tokens %d (training arena %d tokens now) fits it at --max-batch %d", &tokens, &arena, &batch)
		require.NoError(t, err, hint)
		require.Equal(t, 16*2048, arena)
		require.Equal(t, cfg.MaxBatch, batch)
		require.LessOrEqual(t, plan(tokens).Total(), budget)
		if tokens < 16*2048 {
			require.Greater(t, plan(tokens+1).Total(), budget)
		}
	}
	hint, err := microBatchHint(mc, cfg, cfg.MaxBatch, 512, 1024, one-1)
	require.NoError(t, err)
	require.Empty(t, hint, "not even one longest sample's arena fits")
	cfg.MicroBatchTokens = 2048
	hint, err = microBatchHint(mc, cfg, cfg.MaxBatch, 512, 1024, one-1)
	require.NoError(t, err)
	require.Empty(t, hint, "the arena is already the smallest")
}

// Fitting a new run to free memory: a whole optimizer step's arena where it leaves room to decode
// hintBatch sequences; otherwise the largest arena that does, then the largest decode batch; an arena
// that was set is kept.
func TestFitToMemoryShrinksTheArena(t *testing.T) {
	mc, err := model.LoadConfig(filepath.Join("..", "..", "bench", "qwen2.5-shapes", "qwen2.5-0.5B", "config.json"))
	require.NoError(t, err)
	base := selfplay.DefaultConfig()
	base.Precision = "bf16"
	total := func(c selfplay.Config) int64 {
		p, err := trainPlan(mc, c, 512, 1024)
		require.NoError(t, err)
		return p.Total()
	}
	at := func(tokens, batch int) int64 {
		c := base
		c.MicroBatchTokens, c.MaxBatch = tokens, batch
		return total(c)
	}
	const most, hint = 256, 64
	for _, tc := range []struct {
		name           string
		budget         int64
		set, wantArena int // --micro-batch-tokens given; the arena expected (0: the whole step)
	}{
		{"roomy", at(0, most), 0, 0},
		{"whole step at the hint batch", at(0, hint), 0, 0},
		{"tight", at(0, hint) - 1<<30, 0, -1},
		{"one sample", at(2048, hint), 0, 2048},
		{"set", at(0, hint) - 1, 4096, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.MicroBatchTokens, cfg.MaxBatch = tc.set, 1
			require.NoError(t, fitToMemory(dist.Single(), mc, &cfg, most, hint, 512, 1024, tc.budget))
			switch tc.wantArena {
			case -1: // the largest arena short of a whole step: one token more does not fit at the hint batch
				require.Less(t, cfg.MicroBatchTokens, 16*2048)
				require.Greater(t, cfg.MicroBatchTokens, 2048)
				require.Greater(t, at(cfg.MicroBatchTokens+1, hint), tc.budget)
			default:
				require.Equal(t, tc.wantArena, cfg.MicroBatchTokens)
			}
			require.LessOrEqual(t, total(cfg), tc.budget, "the fitted plan fits")
			if tc.set == 0 {
				require.GreaterOrEqual(t, cfg.MaxBatch, hint, "room to decode the hint batch")
			}
			t.Logf("budget %.2f GiB: arena %d tokens, decode batch %d", float64(tc.budget)/(1<<30), cfg.ArenaTokens(), cfg.MaxBatch)
		})
	}
}
