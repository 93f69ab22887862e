package selfplay

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// testDevice is where the loop's tests run: the CPU, or CUDA with SERL_TEST_DEVICES=cuda (bench/gpu.sh on
// a GPU; ./build.sh test runs the resume tests on the SIMT emulator). The memory-plan tests open a CPU
// device of their own, whose live bytes count their run alone.
func testDevice(t testing.TB) *kernels.Device { return testenv.Device(t) }

const fixture = "../model/testdata/llama_f32" // vocab 300, EOS ids 2 and 3

// tinyTokenizer is a byte-level BPE trained by serl to exactly the fixture model's vocabulary.
func tinyTokenizer(t testing.TB) *tokenizer.Tokenizer {
	corpus := func(yield func(string) bool) {
		for i := 0; i < 200; i++ {
			if !yield(fmt.Sprintf("Tom has %d apples and buys %d more. How many apples does he have? The answer is %d.", i, i%7, i+i%7)) {
				return
			}
		}
	}
	tok, err := tokenizer.Train(corpus, 300, tokenizer.TrainOptions{SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}})
	require.NoError(t, err)
	require.LessOrEqual(t, tok.VocabSize(), 300)
	return tok
}

func loadModel(t testing.TB, dir string) *model.Model {
	m, err := model.Load(testDevice(t), dir)
	require.NoError(t, err)
	t.Cleanup(m.Free)
	return m
}

func trainSet() []Problem {
	var ps []Problem
	for i := 0; i < 12; i++ {
		ps = append(ps, Problem{ID: i, Text: fmt.Sprintf("What is %d plus %d?", i, 2*i), Label: fmt.Sprint(3 * i)})
	}
	return ps
}

func tinyConfig(mode Mode, alg rl.Algorithm) Config {
	c := DefaultConfig()
	c.Mode, c.Algorithm, c.Seed = mode, alg, 7
	c.Iterations, c.InstructionsPerIteration = 2, 4
	c.RolloutBatch, c.Samples, c.TrainBatch = 2, 4, 4
	c.MaxPromptTokens, c.MaxNewTokens, c.InstrMaxNewTokens = 48, 10, 10
	c.LR = 1e-3
	c.MaxTicksNoStep = 50
	return c
}

// A few steps of the majority and ground-truth modes with every algorithm, checking the loop's
// invariants: rewards in {0, 1}, kept groups inside the difficulty bounds, finite losses, the files of
// a run directory, and evaluation at every iteration boundary.
func TestLoopModesAndAlgorithms(t *testing.T) {
	tok := tinyTokenizer(t)
	for _, mode := range []Mode{ModeMaj, ModeGT} {
		for _, alg := range []rl.Algorithm{rl.ReinforcePP, rl.GRPO, rl.RLOO} {
			t.Run(fmt.Sprintf("%s_%s", mode, alg), func(t *testing.T) {
				policy, ref := loadModel(t, fixture), loadModel(t, fixture)
				dir := filepath.Join(t.TempDir(), "run")
				evals := 0
				in := Inputs{Policy: policy, Reference: ref, Tokenizer: tok, Train: trainSet(),
					Evaluate: func(ctx context.Context, m *model.Model, it int) (any, error) {
						evals++
						return map[string]int{"iteration": it}, nil
					}}
				cfg := tinyConfig(mode, alg)
				r, err := Start(dir, cfg, in)
				require.NoError(t, err)
				defer r.Free()
				require.NoError(t, r.Run(context.Background(), nil))
				require.Equal(t, 4, r.State().Steps)
				require.Equal(t, 3, evals, "before training and after each of 2 iterations")
				ms, err := ReadMetrics(dir)
				require.NoError(t, err)
				require.Len(t, ms, 4)
				for _, m := range ms {
					require.False(t, math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0), "loss %v", m.Loss)
					require.False(t, math.IsNaN(m.GradNorm))
					require.GreaterOrEqual(t, m.RewardMean, 0.0)
					require.LessOrEqual(t, m.RewardMean, 1.0)
					if mode == ModeMaj {
						require.GreaterOrEqual(t, m.RewardMean, 0.2-1e-9, "trained groups lie inside the bounds")
						require.LessOrEqual(t, m.RewardMean, 0.8+1e-9)
					}
				}
				for _, f := range []string{"config.json", "eval_iter0.json", "eval_iter1.json", "eval_iter2.json",
					"iter1/model.safetensors", "iter2/config.json", "reference/model.safetensors",
					"checkpoint/state.json", "checkpoint/adam_m.safetensors", "keep_train_data_0.jsonl"} {
					require.FileExists(t, filepath.Join(dir, f))
				}
				for _, g := range r.State().Accum {
					for _, resp := range g.Responses {
						require.Contains(t, []float64{0, 1}, resp.Reward)
					}
				}
			})
		}
	}
}

// threeStepRun is the majority-mode run of three steps that the resume tests interrupt: its config,
// its inputs with the policy and the reference loaded from the given folders, and the run left
// uninterrupted, in whole.
func threeStepRun(t *testing.T) (cfg Config, in func(policy, ref string) Inputs, whole string) {
	tok := tinyTokenizer(t)
	cfg = tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 6 // 3 steps
	in = func(policy, ref string) Inputs {
		return Inputs{Policy: loadModel(t, policy), Reference: loadModel(t, ref), Tokenizer: tok, Train: trainSet()}
	}
	whole = filepath.Join(t.TempDir(), "whole")
	runUntil(t, whole, cfg, in(fixture, fixture), 0)
	return cfg, in, whole
}

// resumeThirdStep resumes the run in part, stopped after its second step, runs it to its end, and
// checks that its third step is the uninterrupted run's.
func resumeThirdStep(t *testing.T, cfg Config, in func(policy, ref string) Inputs, whole, part string) {
	st, err := OpenRun(part)
	require.NoError(t, err)
	require.Equal(t, cfg, st.Config)
	rr, err := st.Resume(in(st.PolicyDir, st.ReferenceDir))
	require.NoError(t, err)
	defer rr.Free()
	require.Equal(t, 2, rr.State().Steps)
	require.NoError(t, rr.Run(context.Background(), nil))
	requireSameThirdStep(t, whole, part, "model.safetensors")
}

// noProblemsRun starts a serl-mode run with chat prompts on the fixture model, which writes no problem
// the filters pass: every tick is a self-instruction round.
func noProblemsRun(t *testing.T, maxTicks int) (*Runner, Config) {
	tok := tinyTokenizer(t)
	tmpl, err := chat.Parse(chat.ChatMLTemplate)
	require.NoError(t, err)
	cfg := tinyConfig(ModeSeRL, rl.ReinforcePP)
	cfg.PromptMode = PromptChat
	cfg.MaxPromptTokens, cfg.InstrMaxNewTokens = 960, 12
	cfg.MaxTicksNoStep = maxTicks
	r, err := Start(filepath.Join(t.TempDir(), "run"), cfg, Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture),
		Tokenizer: tok, Chat: tmpl, ChatOpts: chat.Options{EOSToken: "<|im_end|>"}, Seeds: trainSet()})
	require.NoError(t, err)
	t.Cleanup(r.Free)
	return r, cfg
}

// Killing a run after a step and resuming it reproduces the uninterrupted run's next step exactly:
// the same metrics and bit-identical weights.
func TestResumeReproducesNextStep(t *testing.T) {
	cfg, in, whole := threeStepRun(t)
	part := filepath.Join(t.TempDir(), "part")
	runUntil(t, part, cfg, in(fixture, fixture), 2)
	resumeThirdStep(t, cfg, in, whole, part)
}

// pollCtx is a context that is cancelled from the n-th call of Err() after it is armed: an interrupt
// at a chosen poll inside a phase (the loop polls once a tick, decoding once a step).
type pollCtx struct {
	context.Context
	armed bool
	left  int
	done  chan struct{}
	once  sync.Once
}

func (c *pollCtx) Err() error {
	if !c.armed || c.left > 1 {
		if c.armed {
			c.left--
		}
		return nil
	}
	c.once.Do(func() { close(c.done) })
	return context.Canceled
}

func (c *pollCtx) Done() <-chan struct{} { return c.done }

// An interrupt during a rollout stops its decoding at the next step, not after the whole rollout, and
// the run resumes from its last checkpoint as after a kill: the next step as the uninterrupted run's.
func TestInterruptStopsDecoding(t *testing.T) {
	cfg, in, whole := threeStepRun(t)
	part := filepath.Join(t.TempDir(), "part")
	r, err := Start(part, cfg, in(fixture, fixture))
	require.NoError(t, err)
	ctx := &pollCtx{Context: context.Background(), done: make(chan struct{})}
	before := 0
	err = r.Run(ctx, func(m StepMetrics) {
		if m.Step == 2 {
			// polls: the loop's before the next tick, then the rollout's first decoding step; the
			// third, at its second step, is interrupted
			ctx.armed, ctx.left = true, 3
			before = r.engine.Stats().GeneratedTokens
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 2, r.State().Steps)
	// A rollout's rows draw their first tokens from the prefill, then one each per decoding step:
	// interrupted at its second step, it drew at most two tokens a row.
	rows := cfg.RolloutBatch * cfg.Samples
	require.LessOrEqual(t, r.engine.Stats().GeneratedTokens-before, 2*rows, "decoding stopped at the interrupt")
	r.Free()
	resumeThirdStep(t, cfg, in, whole, part)
}

// The same in a self-instruction round: the fixture model writes no usable problem, so its first
// tick is such a round, interrupted at its second decoding step.
func TestInterruptStopsSelfInstruction(t *testing.T) {
	r, cfg := noProblemsRun(t, 50)
	ctx := &pollCtx{Context: context.Background(), done: make(chan struct{}), armed: true, left: 3}
	require.ErrorIs(t, r.Run(ctx, nil), context.Canceled)
	require.Positive(t, r.engine.Stats().GeneratedTokens)
	require.LessOrEqual(t, r.engine.Stats().GeneratedTokens, 2*cfg.GenPrompts, "decoding stopped at the interrupt")
}

// With --kl 0 the step scores no reference (rl.Workspace.Score with none): a run whose reference
// differs from the policy takes the same steps, bit for bit, as one whose reference is the policy's
// weights, and reports a KL of 0 (scored, the differing reference's would not be).
func TestKLZeroScoresNoReference(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.GRPO)
	cfg.KLCoef = 0
	run := func(ref *model.Model) []StepMetrics {
		dir := filepath.Join(t.TempDir(), "run")
		runUntil(t, dir, cfg, Inputs{Policy: loadModel(t, fixture), Reference: ref, Tokenizer: tok, Train: trainSet()}, 0)
		ms, err := ReadMetrics(dir)
		require.NoError(t, err)
		require.Len(t, ms, 4)
		for i := range ms {
			ms[i] = ms[i].Deterministic()
		}
		return ms
	}
	other := loadModel(t, fixture)
	require.NoError(t, model.RandomInit(other, 9, 0.05))
	want, got := run(loadModel(t, fixture)), run(other)
	require.Equal(t, want, got)
	for _, m := range got {
		require.Zero(t, m.KL, "step %d", m.Step)
	}
}

// At --kl 0 a run holds no reference: started with none, it takes the same steps, bit for bit, as one
// given a reference; its reference folder is saved from the policy's initial weights, with the same
// bytes; and killed after a step and resumed, again without one, it reproduces the next step exactly.
func TestKLZeroHoldsNoReference(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.GRPO)
	cfg.KLCoef = 0
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 6 // 3 steps
	whole, part := filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "part")
	runUntil(t, whole, cfg, Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()}, 0)
	runUntil(t, part, cfg, Inputs{Policy: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()}, 2)
	files, err := os.ReadDir(filepath.Join(whole, "reference"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		a, err := os.ReadFile(filepath.Join(whole, "reference", f.Name()))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(part, "reference", f.Name()))
		require.NoError(t, err)
		require.Equal(t, a, b, "reference/%s", f.Name())
	}
	st, err := OpenRun(part)
	require.NoError(t, err)
	rr, err := st.Resume(Inputs{Policy: loadModel(t, st.PolicyDir), Tokenizer: tok, Train: trainSet()})
	require.NoError(t, err)
	defer rr.Free()
	require.NoError(t, rr.Run(context.Background(), nil))
	requireSameThirdStep(t, whole, part, "model.safetensors")
}

// Only a run with no KL term goes without a reference; a LoRA run's is its base, which costs nothing.
func TestReferenceRequired(t *testing.T) {
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	_, err := Start(filepath.Join(t.TempDir(), "run"), cfg, Inputs{Policy: loadModel(t, fixture), Tokenizer: tinyTokenizer(t), Train: trainSet()})
	require.ErrorContains(t, err, "kl_coef 0.001 needs a reference model")
	cfg = loraConfig("f32")
	cfg.KLCoef = 0
	in := loraInputs(t, testDevice(t), cfg, fixture, "")
	in.Reference = nil
	_, err = Start(filepath.Join(t.TempDir(), "run"), cfg, in)
	require.ErrorContains(t, err, "a LoRA run needs its reference")
}

// A training arena smaller than an optimizer step (micro_batch_tokens) accumulates each step's
// gradient over micro-batches: the first step, generated from the same weights, has the same rewards
// and, up to the summation order of float32 gradients, the same gradient norm (the mean over its two
// optimizer steps, so the second's gradient, after the first's update, is compared too).
func TestMicroBatchesAccumulateTheStep(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 2 // 1 step of 8 samples: 2 optimizer steps of 4
	first := func(cfg Config) StepMetrics {
		dir := filepath.Join(t.TempDir(), "run")
		r, err := Start(dir, cfg, Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()})
		require.NoError(t, err)
		defer r.Free()
		require.Equal(t, cfg.ArenaTokens(), r.acts.MaxTokens)
		require.NoError(t, r.Run(context.Background(), nil))
		ms, err := ReadMetrics(dir)
		require.NoError(t, err)
		require.Len(t, ms, 1)
		return ms[0].Deterministic()
	}
	whole := first(cfg)
	cfg.MicroBatchTokens = cfg.MaxPromptTokens + cfg.MaxNewTokens // 58: one to three samples a micro-batch
	micro := first(cfg)
	require.Equal(t, whole.RewardMean, micro.RewardMean)
	require.Equal(t, whole.GenTokens, micro.GenTokens)
	// Measured: 7.89516711 against 7.89516735, 3.0e-8 apart (CPU).
	t.Logf("gradient norm: whole steps %.9g, micro-batches %.9g (relative difference %.2g)", whole.GradNorm, micro.GradNorm,
		math.Abs(whole.GradNorm-micro.GradNorm)/whole.GradNorm)
	require.InEpsilon(t, whole.GradNorm, micro.GradNorm, 2e-7)
	require.Greater(t, micro.TrainTokens/2, cfg.MicroBatchTokens, "an optimizer step spans several micro-batches")
}

// With checkpoint_every the steps in between are not checkpointed, yet the run computes the same: an
// interrupt after such a step (between steps) checkpoints it then, and the resumed run's third step
// equals the uninterrupted one's; a run that loses its in-between step (as a kill would) resumes
// from the checkpoint before it, its records cut back, and redoes it exactly.
func TestCheckpointEvery(t *testing.T) {
	cfg, in, _ := threeStepRun(t)
	cfg.CheckpointEvery = 2 // 3 steps to the iteration: checkpoints after steps 2 and 3
	whole := filepath.Join(t.TempDir(), "whole")
	runUntil(t, whole, cfg, in(fixture, fixture), 0)
	step := func(dir string) int {
		st, err := OpenRun(dir)
		require.NoError(t, err)
		defer st.Close()
		return st.Step
	}
	require.Equal(t, 3, step(whole))

	// Interrupted after step 1 (not due for a checkpoint): the interrupt writes it.
	part := filepath.Join(t.TempDir(), "part")
	runUntil(t, part, cfg, in(fixture, fixture), 1)
	require.Equal(t, 1, step(part))
	st, err := OpenRun(part)
	require.NoError(t, err)
	rr, err := st.Resume(in(st.PolicyDir, st.ReferenceDir))
	require.NoError(t, err)
	// Interrupted once step 2 is checkpointed, it stops before step 3 with nothing left to save.
	ctx, cancel := context.WithCancel(context.Background())
	require.ErrorIs(t, rr.Run(ctx, func(m StepMetrics) {
		if m.Step == 2 {
			cancel()
		}
	}), context.Canceled)
	rr.Free()
	require.Equal(t, 2, step(part))
	resumeThirdStep(t, cfg, in, whole, part)

	// A run whose step 1 was never saved (interrupted, as a kill is, once step 2 had begun updating
	// the weights) resumes from step 0 and redoes steps 1 to 3.
	lost := filepath.Join(t.TempDir(), "lost")
	r, err := Start(lost, cfg, in(fixture, fixture))
	require.NoError(t, err)
	armed := false
	// Cancelled at the first poll after step 2's first optimizer step: its second's.
	err = r.Run(&condCtx{Context: context.Background(), cancelled: func() bool { return armed && r.unsaved == nil }},
		func(m StepMetrics) { armed = m.Step == 1 })
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, r.State().Steps)
	r.Free()
	require.Equal(t, 0, step(lost))
	ms, err := ReadMetrics(lost)
	require.NoError(t, err)
	require.Len(t, ms, 1, "step 1's record, cut back on resume")
	st, err = OpenRun(lost)
	require.NoError(t, err)
	rr, err = st.Resume(in(st.PolicyDir, st.ReferenceDir))
	require.NoError(t, err)
	defer rr.Free()
	require.NoError(t, rr.Run(context.Background(), nil))
	requireSameThirdStep(t, whole, lost, "model.safetensors")
}

// condCtx is a context that is cancelled while cancelled() holds.
type condCtx struct {
	context.Context
	cancelled func() bool
}

func (c *condCtx) Err() error {
	if c.cancelled() {
		return context.Canceled
	}
	return nil
}
