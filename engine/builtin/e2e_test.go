package builtin

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/engine/task/arith"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/internal/testenv"
)

// End to end on the shipped model: a few SeRL steps of every mode and algorithm, with the loop's
// invariants checked, and a kill-and-resume that must reproduce the uninterrupted run's next step.

type e2e struct {
	dir  string
	tok  *tokenizer.Tokenizer
	tmpl chat.Template
	opts chat.Options
}

func setupE2E(t *testing.T) *e2e {
	dir, err := Extract(t.TempDir())
	require.NoError(t, err)
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	require.NoError(t, err)
	cc, err := chat.LoadTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
	require.NoError(t, err)
	tmpl, err := cc.Template()
	require.NoError(t, err)
	return &e2e{dir: dir, tok: tok, tmpl: tmpl, opts: cc.Options(true)}
}

// e2eConfig is SelfPlayConfig shrunk to seconds: 4 problems × 4 samples per step, 2 steps.
func e2eConfig(mode selfplay.Mode, alg rl.Algorithm) selfplay.Config {
	c := SelfPlayConfig()
	c.Mode, c.Algorithm, c.Seed = mode, alg, 3
	c.Iterations, c.InstructionsPerIteration = 1, 8
	c.RolloutBatch, c.Samples, c.TrainBatch = 4, 4, 8
	c.MaxNewTokens, c.InstrMaxNewTokens = 128, 200
	c.GenPrompts = 2
	// Wide bounds so that groups are kept whatever the model's accuracy on so few problems.
	c.DifficultyLow, c.DifficultyHigh = 0.25, 1
	return c
}

func (e *e2e) inputs(t *testing.T, policyDir, refDir string) selfplay.Inputs {
	return e.inputsAt(t, policyDir, refDir, model.PrecisionF32)
}

// inputsAt loads the policy and the reference as serl train does at precision p (the reference frozen).
func (e *e2e) inputsAt(t *testing.T, policyDir, refDir string, p model.Precision) selfplay.Inputs {
	load := func(dir string, frozen bool) *model.Model {
		m, err := model.LoadWith(testenv.Device(t), dir, model.Options{Precision: p, Frozen: frozen})
		require.NoError(t, err)
		t.Cleanup(m.Free)
		return m
	}
	var seeds, train []selfplay.Problem
	for i, p := range arith.SeedSet() {
		seeds = append(seeds, selfplay.Problem{ID: i, Text: p.Problem, Level: p.Level})
	}
	i := 0
	for p := range arith.Corpus(9, 32, nil) {
		train = append(train, selfplay.Problem{ID: i, Text: p.Problem, Label: p.Answer, Level: p.Level})
		i++
	}
	return selfplay.Inputs{Policy: load(policyDir, false), Reference: load(refDir, true), Tokenizer: e.tok, Chat: e.tmpl,
		ChatOpts: e.opts, Seeds: seeds, Train: train}
}

func TestE2EModesAndAlgorithms(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end on the built-in model: seconds per case")
	}
	e := setupE2E(t)
	for _, mode := range []selfplay.Mode{selfplay.ModeSeRL, selfplay.ModeMaj, selfplay.ModeGT} {
		for _, alg := range []rl.Algorithm{rl.ReinforcePP, rl.GRPO, rl.RLOO} {
			t.Run(fmt.Sprintf("%s_%s", mode, alg), func(t *testing.T) {
				cfg := e2eConfig(mode, alg)
				run := filepath.Join(t.TempDir(), "run")
				r, err := selfplay.Start(run, cfg, e.inputs(t, e.dir, e.dir))
				require.NoError(t, err)
				defer r.Free()
				var steps []selfplay.StepMetrics
				require.NoError(t, r.Run(context.Background(), func(m selfplay.StepMetrics) { steps = append(steps, m) }))
				require.Len(t, steps, 2)
				logged, err := selfplay.ReadMetrics(run)
				require.NoError(t, err)
				require.Equal(t, steps, logged)
				lo, hi := cfg.DifficultyLow, cfg.DifficultyHigh
				if mode == selfplay.ModeGT {
					lo, hi = 0, 1 // the oracle baseline filters nothing, as official
				}
				for _, m := range steps {
					require.False(t, math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0), "loss %v", m.Loss)
					require.False(t, math.IsNaN(m.GradNorm) || math.IsInf(m.GradNorm, 0), "grad norm %v", m.GradNorm)
					// Trained groups passed the difficulty filter, so their mean reward (the majority
					// share in serl/maj mode) lies inside the bounds.
					require.GreaterOrEqual(t, m.RewardMean, lo-1e-9)
					require.LessOrEqual(t, m.RewardMean, hi+1e-9)
					require.Positive(t, m.GroupsKept)
					// Reinforce++ whitens the returns over the step's tokens; with rewards that differ
					// their spread is far above the variance floor (1e-8), so the std is exactly 1. RLOO's
					// leave-one-out rewards can all be 0 (uniform groups): then the floor holds it below.
					switch {
					case alg == rl.ReinforcePP && m.RewardMean > 0 && m.RewardMean < 1:
						require.InDelta(t, 1, m.AdvStd, 1e-6)
					case alg != rl.GRPO:
						require.LessOrEqual(t, m.AdvStd, 1+1e-6)
					}
					if mode == selfplay.ModeSeRL {
						require.Positive(t, m.Generated, "self-instruction ran")
						require.LessOrEqual(t, m.Accepted, m.Generated)
						// Its time and tokens are their own part of the split.
						require.Positive(t, m.InstructSec)
						require.Positive(t, m.InstructTokens)
						require.Less(t, m.InstructTokens, m.GenTokens, "the rollouts generated the rest")
					}
					require.InDelta(t, m.GenSec, m.InstructSec+m.RolloutSec, 1e-9)
					require.LessOrEqual(t, m.ScoreSec+m.UpdateSec, m.TrainSec)
					require.LessOrEqual(t, m.GenSec+m.FilterSec+m.RewardSec+m.TrainSec, m.StepSec)
					if mode != selfplay.ModeSeRL {
						require.Zero(t, m.InstructSec)
					}
				}
				for _, g := range r.State().Accum {
					for _, resp := range g.Responses {
						require.Contains(t, []float64{0, 1}, resp.Reward)
					}
					require.GreaterOrEqual(t, g.Share, lo-1e-9)
					require.LessOrEqual(t, g.Share, hi+1e-9)
				}
			})
		}
	}
}

// A serl-mode run killed after its first step and resumed takes exactly the step the uninterrupted run
// takes: the same metrics and bit-identical weights, in f32 and in bf16 mixed precision (bf16 weight
// copy, activations and KV cache; float32 master weights and AdamW moments in the checkpoint). On CUDA
// too (SERL_TEST_DEVICES=cuda): ./build.sh test runs it on the SIMT emulator, bench/gpu.sh's
// killresume step the same with a real SIGKILL.
func TestE2EResumeReproducesNextStep(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end on the built-in model")
	}
	e := setupE2E(t)
	for _, prec := range []string{"f32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			p, err := model.ParsePrecision(prec)
			require.NoError(t, err)
			cfg := e2eConfig(selfplay.ModeSeRL, rl.ReinforcePP)
			cfg.Precision = prec
			whole := filepath.Join(t.TempDir(), "whole")
			rw, err := selfplay.Start(whole, cfg, e.inputsAt(t, e.dir, e.dir, p))
			require.NoError(t, err)
			require.NoError(t, rw.Run(context.Background(), nil))
			rw.Free()

			part := filepath.Join(t.TempDir(), "part")
			rp, err := selfplay.Start(part, cfg, e.inputsAt(t, e.dir, e.dir, p))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			require.ErrorIs(t, rp.Run(ctx, func(m selfplay.StepMetrics) { cancel() }), context.Canceled)
			cancel()
			rp.Free()

			st, err := selfplay.OpenRun(part)
			require.NoError(t, err)
			require.Equal(t, cfg, st.Config)
			rr, err := st.Resume(e.inputsAt(t, st.PolicyDir, st.ReferenceDir, p))
			require.NoError(t, err)
			defer rr.Free()
			require.Equal(t, 1, rr.State().Steps)
			require.NoError(t, rr.Run(context.Background(), nil))

			mw, err := selfplay.ReadMetrics(whole)
			require.NoError(t, err)
			mp, err := selfplay.ReadMetrics(part)
			require.NoError(t, err)
			require.Len(t, mw, 2)
			require.Len(t, mp, 2)
			require.Equal(t, mw[1].Deterministic(), mp[1].Deterministic(), "the resumed step equals the uninterrupted one")
			a, err := os.ReadFile(filepath.Join(whole, "checkpoint", "model", "model.safetensors"))
			require.NoError(t, err)
			b, err := os.ReadFile(filepath.Join(part, "checkpoint", "model", "model.safetensors"))
			require.NoError(t, err)
			require.True(t, slices.Equal(a, b), "bit-identical weights after the resumed step")
		})
	}
}
