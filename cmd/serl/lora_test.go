package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/safetensors"
)

// The LoRA fixtures' tolerances (engine/model/lora_test.go): 4× the worst measured, 4.83e-6 and 2.61e-6.
var loraCLITol = struct{ logprob, grad float64 }{1.9e-5, 1.1e-5}

func logprobLines(t *testing.T, out string) [][]float64 {
	var all [][]float64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct{ Logprobs []float64 }
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		all = append(all, rec.Logprobs)
	}
	return all
}

// serl logprobs --adapter matches PyTorch's LoRA reference; serl merge writes a model with the same
// log-probs (1e-5); serl grad --adapter writes the adapters' gradients under PEFT's names.
func TestLoRACLI(t *testing.T) {
	for _, fam := range []string{"qwen2", "llama"} {
		t.Run(fam, func(t *testing.T) {
			base, adapter := fixtureDir(t, fam+"_f32"), fixtureDir(t, fam+"_lora")
			ref := readRef(t, adapter)
			in := writeIDs(t, adapter, ref)
			code, out, errs := runCLI(t, "logprobs", "--device", "cpu", "--model", base, "--adapter", adapter, "--in", in)
			require.Equal(t, 0, code, errs)
			withAdapter := logprobLines(t, out)
			require.Len(t, withAdapter, len(ref.Sequences))
			merged := filepath.Join(t.TempDir(), "merged")
			code, _, errs = runCLI(t, "merge", "--device", "cpu", "--model", base, "--adapter", adapter, "--out", merged)
			require.Equal(t, 0, code, errs)
			require.NoFileExists(t, filepath.Join(merged, evaluate.PromptFile), "nothing said how the base is prompted")
			code, out, errs = runCLI(t, "logprobs", "--device", "cpu", "--model", merged, "--in", in)
			require.Equal(t, 0, code, errs)
			fromMerged := logprobLines(t, out)
			worstRef, worstMerge := 0.0, 0.0
			for i, s := range ref.Sequences {
				for j, want := range s.LogProbs {
					worstRef = math.Max(worstRef, math.Abs(withAdapter[i][j]-want))
					worstMerge = math.Max(worstMerge, math.Abs(withAdapter[i][j]-fromMerged[i][j]))
				}
			}
			t.Logf("--adapter vs PyTorch %.3g; merged vs --adapter %.3g", worstRef, worstMerge)
			require.LessOrEqual(t, worstRef, loraCLITol.logprob)
			require.LessOrEqual(t, worstMerge, 1e-5)

			g := filepath.Join(t.TempDir(), "g.safetensors")
			code, _, errs = runCLI(t, "grad", "--device", "cpu", "--model", base, "--adapter", adapter, "--in", in, "--out", g)
			require.Equal(t, 0, code, errs)
			got, err := safetensors.Open(g)
			require.NoError(t, err)
			defer got.Close()
			want, err := safetensors.Open(filepath.Join(adapter, "grads.safetensors"))
			require.NoError(t, err)
			defer want.Close()
			require.ElementsMatch(t, want.Names(), got.Names(), "adapter gradients only, under PEFT's names")
			for _, name := range want.Names() {
				info, _ := got.Tensor(name)
				gv := make([]float32, info.NumElements())
				require.NoError(t, got.Float32(name, gv))
				raw, err := want.Bytes(name)
				require.NoError(t, err)
				var num, den float64
				for i := range gv {
					w := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
					num += (float64(gv[i]) - w) * (float64(gv[i]) - w)
					den += w * w
				}
				require.LessOrEqual(t, math.Sqrt(num/den), loraCLITol.grad, name)
			}
		})
	}
	dir := fixtureDir(t, "qwen2_f32")
	code, _, errs := runCLI(t, "logprobs", "--device", "cpu", "--model", dir, "--adapter", dir, "--in", writeIDs(t, dir, readRef(t, dir)))
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "adapter_config.json")
}

// A merged model records the prompt format of the run its adapters were trained in when its base does
// not say (a run's reference/ saved before it carried serl.json, or a base copied out of its run): a
// chat-trained model loaded raw answers badly, and the merged folder no longer sits in the run.
func TestMergeRecordsRunPrompt(t *testing.T) {
	base, fixture := fixtureDir(t, "qwen2_f32"), fixtureDir(t, "qwen2_lora")
	run := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(run, "config.json"),
		[]byte(`{"instructions_per_iteration": 4, "prompt_mode": "chat", "system_prompt": "Box it."}`), 0o644))
	adapter := filepath.Join(run, "iter1")
	require.NoError(t, os.Mkdir(adapter, 0o755))
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(fixture, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(adapter, name), b, 0o644))
	}
	merged := filepath.Join(t.TempDir(), "merged")
	code, _, errs := runCLI(t, "merge", "--device", "cpu", "--model", base, "--adapter", adapter, "--out", merged)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "prompt mode chat (from the adapters' run config.json)")
	pc, ok, err := evaluate.ReadPromptConfig(merged)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, evaluate.PromptConfig{Mode: evaluate.ModeChat, System: "Box it."}, pc)
}

// serl train --lora-rank killed in training, while writing a checkpoint and at an iteration boundary,
// and resumed each time, leaves the run directory of an uninterrupted run: adapters, their moments and
// every record byte for byte.
func TestKillAndResumeLoRA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serl train 5 times on the built-in model")
	}
	base := t.TempDir()
	args := append(append([]string(nil), killRunArgs...), "--lora-rank", "4", "--lr", "5e-4")
	whole, part := filepath.Join(base, "whole"), filepath.Join(base, "part")
	require.False(t, startCLI(t, filepath.Join(base, "trace0"), nil, append(args, "--run", whole)...).wait(t))
	for i, at := range []string{"selfplay.train", "checkpoint.moments", "selfplay.iteration:2"} {
		cmd := append(append([]string(nil), args...), "--run", part)
		if i > 0 {
			cmd = []string{"train", "--device", "cpu", "--threads", "1", "--resume", part}
		}
		p := startCLI(t, filepath.Join(base, fmt.Sprintf("trace%d", i+1)), []string{"SERL_CRASH_AT=" + at}, cmd...)
		require.True(t, p.wait(t), "serl was to be killed at %s but finished:\n%s", at, p.stderr.String())
	}
	p := startCLI(t, filepath.Join(base, "trace9"), nil, "train", "--device", "cpu", "--threads", "1", "--resume", part)
	require.False(t, p.wait(t))
	require.FileExists(t, filepath.Join(part, "checkpoint", "model", "adapter_model.safetensors"))
	require.NoFileExists(t, filepath.Join(part, "checkpoint", "model", "model.safetensors"), "no copy of the base in a checkpoint")
	pc, ok, err := evaluate.ReadPromptConfig(filepath.Join(part, "reference"))
	require.NoError(t, err)
	require.True(t, ok, "the run's reference records its prompt format")
	require.Equal(t, evaluate.ModeChat, pc.Mode)
	requireSameRun(t, whole, part)
}
