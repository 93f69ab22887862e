package generate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/internal/testenv"
)

// The decode benchmark's configurations: bench/torch_decode.py has the same table, and bench/decode.sh
// runs both side by side. Weights are random (RandomInit, std 0.02), embeddings untied.
var decodeBenchConfigs = []struct {
	name                                                string
	hidden, layers, heads, kvHeads, intermediate, vocab int
}{
	{"S", 256, 4, 4, 2, 704, 2048},
	{"M", 768, 12, 12, 4, 2048, 32000},
}

// decodeBenchWorkloads: 64 prompts of 64 random tokens × 1 sample, greedy or sampled at temperature 1,
// and 4 prompts × 16 samples (shared prefix); 128 new tokens each, EOS banned (no early stop).
var decodeBenchWorkloads = []struct {
	name                 string
	prompts, n           int
	temperature          float32
	promptLen, newTokens int
}{
	{"greedy", 64, 1, 0, 64, 128},
	{"sampled", 64, 1, 1, 64, 128},
	{"shared", 4, 16, 1, 64, 128},
}

// decodeBenchResult is the JSON line appended to $SERL_BENCH_JSON.
type decodeBenchResult struct {
	Impl            string  `json:"impl"`
	Config          string  `json:"config"`
	Precision       string  `json:"precision"`
	Workload        string  `json:"workload"`
	Threads         string  `json:"threads"`
	Graphs          bool    `json:"graphs"` // decode steps launched as captured graphs (SERL_GRAPHS)
	Runs            int     `json:"runs"`
	Sequences       int     `json:"sequences"`
	Tokens          int     `json:"tokens"` // generated per run
	Seconds         float64 `json:"seconds"`
	TokensPerSec    float64 `json:"tokens_per_s"`
	DecodeTokPerSec float64 `json:"decode_tokens_per_s"` // decode-step tokens / (decode + sampling time)
	PrefillSeconds  float64 `json:"prefill_s"`
	DecodeSeconds   float64 `json:"decode_s"`
	SampleSeconds   float64 `json:"sample_s"`
	Prefills        float64 `json:"prefills"` // per run
	DecodeSteps     float64 `json:"decode_steps"`
	AllocsPerOp     float64 `json:"allocs_per_op"`
	GraphLaunches   float64 `json:"graph_launches"` // per run
	// CPUSeconds is the process's CPU time over the timed runs, per run: unlike wall time, descheduling
	// on a shared machine does not inflate it.
	CPUSeconds float64 `json:"cpu_s"`
}

// BenchmarkDecodeConfig times whole Generate calls (prefill included) on the shared CPU device:
//
//	SERL_THREADS=2 go test ./engine/generate -run '^$' -bench 'DecodeConfig/S' -benchtime 1x
//
// SERL_BENCH_JSON=path appends one JSON line per benchmark (bench/decode.sh reads them);
// SERL_BENCH_PROFILE=1 prints the device's per-op table of the timed runs to stderr (their steps then
// issue ops one by one, not as graph launches);
// SERL_BENCH_PRECISION=bf16 runs the model in bf16 (default f32); SERL_GRAPHS=0 issues every
// decode step's ops one by one instead of launching the captured graph.
func BenchmarkDecodeConfig(b *testing.B) {
	prec := model.PrecisionF32
	if s := os.Getenv("SERL_BENCH_PRECISION"); s != "" {
		var err error
		if prec, err = model.ParsePrecision(s); err != nil {
			b.Fatalf("SERL_BENCH_PRECISION: %v", err)
		}
	}
	for _, c := range decodeBenchConfigs {
		b.Run(c.name, func(b *testing.B) {
			mc, err := model.ParseConfig(fmt.Appendf(nil, `{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2",
				"hidden_size":%d,"num_hidden_layers":%d,"num_attention_heads":%d,"num_key_value_heads":%d,
				"intermediate_size":%d,"vocab_size":%d,"max_position_embeddings":4096,"rms_norm_eps":1e-6,
				"rope_theta":10000.0,"tie_word_embeddings":false,"hidden_act":"silu"}`,
				c.hidden, c.layers, c.heads, c.kvHeads, c.intermediate, c.vocab), c.name)
			if err != nil {
				b.Fatal(err)
			}
			m, err := model.NewWith(testenv.Device(b), mc, model.Options{Precision: prec}) // SERL_TEST_DEVICES=cuda: on the GPU (bench/gpu.sh)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Free()
			if err := model.RandomInit(m, 1, 0.02); err != nil {
				b.Fatal(err)
			}
			for _, w := range decodeBenchWorkloads {
				b.Run(w.name, func(b *testing.B) {
					benchDecode(b, m, c.name, w.name, w.prompts, w.n, w.temperature, w.promptLen, w.newTokens)
				})
			}
		})
	}
}

func benchDecode(b *testing.B, m *model.Model, config, workload string, prompts, n int, temp float32, promptLen, newTokens int) {
	const bs = 16
	seqs := prompts * n
	perSeq := (promptLen + newTokens + bs - 1) / bs
	e, err := New(m, Config{BlockSize: bs, NumBlocks: seqs*perSeq + prompts, MaxBatch: 64,
		MaxPrefillTokens: prompts * promptLen, MaxSeqLen: promptLen + newTokens})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Free()
	rng := rand.New(rand.NewPCG(2, 7))
	reqs := make([]Request, prompts)
	for i := range reqs {
		p := make([]int32, promptLen)
		for j := range p {
			p[j] = int32(rng.IntN(m.Config.Vocab))
		}
		reqs[i] = Request{Prompt: p, N: n, Params: Params{MaxNewTokens: newTokens, Temperature: temp,
			StopIDs: []int32{}, Seed: uint64(i + 1)}}
	}
	// Warm-up: one short call at the full batch (thread pool, page faults of the cache and workspace).
	warm := make([]Request, len(reqs))
	for i, r := range reqs {
		r.Params.MaxNewTokens = 2
		warm[i] = r
	}
	if _, err := e.Generate(warm, nil, nil); err != nil {
		b.Fatal(err)
	}
	before := e.Stats()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	prof := os.Getenv("SERL_BENCH_PROFILE") != ""
	if prof {
		m.Device().SetProfiling(true)
	}
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		out, err := e.Generate(reqs, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, ss := range out {
			for _, s := range ss {
				if len(s.Tokens) != newTokens {
					b.Fatalf("a sample has %d tokens, want %d", len(s.Tokens), newTokens)
				}
			}
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := func(r syscall.Rusage) float64 { return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9 }
	runtime.ReadMemStats(&ms1)
	if prof {
		fmt.Fprintf(os.Stderr, "per-op profile of %s/%s (%d runs):\n", config, workload, b.N)
		if err := m.Device().WriteProfile(os.Stderr); err != nil {
			b.Fatal(err)
		}
		m.Device().SetProfiling(false)
	}
	st := e.Stats()
	N := float64(b.N)
	gen := st.GeneratedTokens - before.GeneratedTokens
	decodeToks := gen - seqs*b.N // the first token of each sample comes from the prefill's logits
	dt, pt, sp := st.DecodeTime-before.DecodeTime, st.PrefillTime-before.PrefillTime, st.SampleTime-before.SampleTime
	r := decodeBenchResult{Impl: "serl", Config: config, Precision: m.Precision().String(), Workload: workload, Threads: os.Getenv("SERL_THREADS"),
		Graphs: e.graphs.on, GraphLaunches: float64(st.GraphLaunches-before.GraphLaunches) / N,
		Runs: b.N, Sequences: seqs, Tokens: gen / b.N, Seconds: el.Seconds() / N,
		TokensPerSec: float64(gen) / el.Seconds(), DecodeTokPerSec: float64(decodeToks) / (dt + sp).Seconds(),
		PrefillSeconds: pt.Seconds() / N, DecodeSeconds: dt.Seconds() / N, SampleSeconds: sp.Seconds() / N,
		Prefills: float64(st.Prefills-before.Prefills) / N, DecodeSteps: float64(st.DecodeSteps-before.DecodeSteps) / N,
		AllocsPerOp: float64(ms1.Mallocs-ms0.Mallocs) / N, CPUSeconds: (cpu(ru1) - cpu(ru0)) / N}
	b.ReportMetric(r.TokensPerSec, "tokens/s")
	b.ReportMetric(r.DecodeTokPerSec, "decode-tokens/s")
	b.ReportMetric(r.Prefills, "prefills/op")
	b.ReportMetric(r.CPUSeconds, "cpu-s/op")
	if path := os.Getenv("SERL_BENCH_JSON"); path != "" {
		line, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		_, err = f.Write(append(line, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
