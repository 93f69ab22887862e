package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
)

// decodeFlags are `serl bench --mode decode`'s workload: prompts × samples continuations of exactly
// new tokens each (no stop id can end one early), from random prompts of promptLen tokens — the
// workloads transformers' generate is compared on (bench/hf_generate.py takes the same four numbers).
type decodeFlags struct {
	prompts, samples, newTokens, promptLen, maxBatch int
	temperature                                      float64
}

func (f *decodeFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.prompts, "prompts", 64, "decode: prompts per Generate call")
	fs.IntVar(&f.samples, "samples", 1, "decode: samples per prompt (they share the prompt's KV blocks)")
	fs.IntVar(&f.newTokens, "new", 128, "decode: new tokens of every sample")
	fs.IntVar(&f.promptLen, "prompt-len", 64, "decode: tokens per prompt")
	fs.IntVar(&f.maxBatch, "max-batch", 256, "decode: sequences decoded together")
	fs.Float64Var(&f.temperature, "temperature", 1, "decode: sampling temperature (0: greedy)")
}

func (f *decodeFlags) check() error {
	switch {
	case f.prompts < 1 || f.samples < 1 || f.newTokens < 1 || f.promptLen < 1 || f.maxBatch < 1:
		return usagef("--prompts %d --samples %d --new %d --prompt-len %d --max-batch %d: each must be ≥ 1",
			f.prompts, f.samples, f.newTokens, f.promptLen, f.maxBatch)
	case !(f.temperature >= 0):
		return usagef("--temperature %v: want ≥ 0", f.temperature)
	}
	return nil
}

func (f *decodeFlags) String() string {
	return fmt.Sprintf("%d prompts × %d samples of %d new tokens after %d-token prompts (batch ≤ %d, temperature %g)",
		f.prompts, f.samples, f.newTokens, f.promptLen, min(f.maxBatch, f.prompts*f.samples), f.temperature)
}

// engineConfig sizes the engine with the one KV sizing rule (generate.Size).
func (f *decodeFlags) engineConfig(c model.Config) (generate.Config, error) {
	if f.promptLen+f.newTokens > c.MaxPositions {
		return generate.Config{}, usagef("--prompt-len %d + --new %d exceeds max_position_embeddings %d", f.promptLen, f.newTokens, c.MaxPositions)
	}
	return generate.Size(c, generate.Sizing{MaxPrompt: f.promptLen, MaxNew: f.newTokens,
		MaxBatch: min(f.maxBatch, f.prompts*f.samples), Prompts: f.prompts})
}

// decodeResult is the --json line of a decode benchmark.
type decodeResult struct {
	Impl            string  `json:"impl"`
	Config          string  `json:"config"`
	Mode            string  `json:"mode"`
	Precision       string  `json:"precision"`
	Device          string  `json:"device"`
	Threads         int     `json:"threads"`
	Params          int     `json:"params"`
	Prompts         int     `json:"prompts"`
	Samples         int     `json:"samples"`
	PromptLen       int     `json:"prompt_len"`
	NewTokens       int     `json:"new_tokens"`
	MaxBatch        int     `json:"max_batch"`
	Runs            int     `json:"runs"`
	Seconds         float64 `json:"seconds"`             // wall time of one Generate call, prefill included
	TokensPerSec    float64 `json:"tokens_per_s"`        // generated tokens over that wall time
	DecodeTokPerSec float64 `json:"decode_tokens_per_s"` // decode steps' tokens over their own time
	PrefillSeconds  float64 `json:"prefill_s"`
	DecodeSteps     float64 `json:"decode_steps"`
	CPUSeconds      float64 `json:"cpu_s"`
	PlanBytes       int64   `json:"plan_bytes"`
	DevicePeak      int64   `json:"device_peak_bytes"`
}

// run times runs Generate calls (after warmup shorter ones) of the workload on m.
func (f *decodeFlags) run(m *model.Model, cfg generate.Config, seed uint64, warmup, runs int, out io.Writer) (decodeResult, error) {
	e, err := generate.New(m, cfg)
	if err != nil {
		return decodeResult{}, err
	}
	defer e.Free()
	rng := rand.New(rand.NewPCG(seed, 0xdec0de))
	reqs := make([]generate.Request, f.prompts)
	for i := range reqs {
		p := make([]int32, f.promptLen)
		for j := range p {
			p[j] = int32(rng.IntN(m.Config.Vocab))
		}
		// StopIDs empty (not nil, which means the model's EOS): every sample runs to --new tokens.
		reqs[i] = generate.Request{Prompt: p, N: f.samples, Params: generate.Params{MaxNewTokens: f.newTokens,
			Temperature: float32(f.temperature), StopIDs: []int32{}, Seed: seed + uint64(i)}}
	}
	// Warm-up calls of a few tokens at the full batch: thread pool, page faults, the device's pools.
	warm := make([]generate.Request, len(reqs))
	for i, r := range reqs {
		r.Params.MaxNewTokens = min(4, f.newTokens)
		warm[i] = r
	}
	for range warmup {
		if _, err := e.Generate(warm, nil, nil); err != nil {
			return decodeResult{}, err
		}
	}
	d := m.Device()
	res := decodeResult{Impl: "serl", Mode: "decode", Precision: m.Precision().String(), Device: d.Info().Name,
		Threads: d.Info().Threads, Prompts: f.prompts, Samples: f.samples, PromptLen: f.promptLen,
		NewTokens: f.newTokens, MaxBatch: cfg.MaxBatch, Runs: runs}
	before := e.Stats()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	for range runs {
		got, err := e.Generate(reqs, nil, nil)
		if err != nil {
			return res, err
		}
		for _, ss := range got {
			for _, s := range ss {
				if len(s.Tokens) != f.newTokens {
					return res, fmt.Errorf("bench: a sample has %d tokens, want %d", len(s.Tokens), f.newTokens)
				}
			}
		}
	}
	el := time.Since(t0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	st := e.Stats()
	cpu := func(r syscall.Rusage) float64 { return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9 }
	n := float64(runs)
	gen := st.GeneratedTokens - before.GeneratedTokens
	seqs := f.prompts * f.samples * runs
	res.Seconds = el.Seconds() / n
	res.TokensPerSec = float64(gen) / el.Seconds()
	// The first token of every sample comes from the prefill's logits, not from a decode step.
	if t := (st.DecodeTime + st.SampleTime - before.DecodeTime - before.SampleTime).Seconds(); t > 0 {
		res.DecodeTokPerSec = float64(gen-seqs) / t
	}
	res.PrefillSeconds = (st.PrefillTime - before.PrefillTime).Seconds() / n
	res.DecodeSteps = float64(st.DecodeSteps-before.DecodeSteps) / n
	res.CPUSeconds = (cpu(ru1) - cpu(ru0)) / n
	fmt.Fprintf(out, "generate    %.2f s per call (prefill %.2f s, %.0f decode steps) over %d calls after %d warm-up\n",
		res.Seconds, res.PrefillSeconds, res.DecodeSteps, runs, warmup)
	fmt.Fprintf(out, "throughput  %.0f tokens/s (decode steps alone: %.0f tokens/s; %d threads, %.2f CPU-s per call)\n",
		res.TokensPerSec, res.DecodeTokPerSec, res.Threads, res.CPUSeconds)
	return res, nil
}
