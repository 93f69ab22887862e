package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/train"
)

func init() {
	addCommand(command{name: "bench", summary: "time training, scoring or decoding of a random-weight model", run: runBench})
}

// benchConfig is a named benchmark shape: a Qwen2 configuration (untied embeddings) and its batch.
type benchConfig struct {
	hidden, layers, heads, kvHeads, intermediate, vocab int
	batch, seq                                          int
}

// benchConfigs are the configurations bench/model.sh compares with PyTorch (bench/torch_model.py
// has the same table).
var benchConfigs = map[string]benchConfig{
	"S": {hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 704, vocab: 2048, batch: 8, seq: 256},
	"M": {hidden: 768, layers: 12, heads: 12, kvHeads: 4, intermediate: 2048, vocab: 32000, batch: 4, seq: 512},
}

func (b benchConfig) json() []byte {
	return []byte(fmt.Sprintf(`{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":%d,
		"num_hidden_layers":%d,"num_attention_heads":%d,"num_key_value_heads":%d,"intermediate_size":%d,
		"vocab_size":%d,"max_position_embeddings":%d,"rms_norm_eps":1e-6,"rope_theta":10000.0,
		"tie_word_embeddings":false,"hidden_act":"silu"}`,
		b.hidden, b.layers, b.heads, b.kvHeads, b.intermediate, b.vocab, max(b.seq, 4096)))
}

// benchResult is the --json line.
type benchResult struct {
	Impl          string  `json:"impl"`
	Config        string  `json:"config"`
	Mode          string  `json:"mode"`
	Precision     string  `json:"precision"`
	Device        string  `json:"device"`
	Threads       int     `json:"threads"`
	Params        int     `json:"params"`
	Batch         int     `json:"batch"`
	Seq           int     `json:"seq"`
	Warmup        int     `json:"warmup"`
	Steps         int     `json:"steps"`
	TokensPerSec  float64 `json:"tokens_per_s"`
	FlopsPerToken float64 `json:"flops_per_token"` // flopsPerToken: what MFU is quoted against
	ModelTFLOPs   float64 `json:"model_tflops"`    // flops_per_token × tokens_per_s
	MsPerStep     float64 `json:"ms_per_step"`
	MsMin         float64 `json:"ms_min"`
	MsMax         float64 `json:"ms_max"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	PlanBytes     int64   `json:"plan_bytes"`
	RSSOverPlan   float64 `json:"rss_over_plan"`
	DevicePeak    int64   `json:"device_peak_bytes"`
	AllocsPerStep float64 `json:"allocs_per_step"`
	AllocSteps    int     `json:"alloc_steps"` // timed steps that allocated at all
	CPUMsPerStep  float64 `json:"cpu_ms_per_step"`
	LossFirst     float64 `json:"loss_first"`
	LossLast      float64 `json:"loss_last"`
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	var df deviceFlags
	df.register(fs)
	cfgName := fs.String("config", "S", "S, M, or the path of a config.json")
	mode := fs.String("mode", "train", "train (forward, backward, AdamW), score (forward and log-probabilities) or decode (batched generation; --prompts, --samples, --new, --prompt-len)")
	steps := fs.Int("steps", 10, "timed steps")
	warmup := fs.Int("warmup", 2, "untimed steps first")
	seed := fs.Uint64("seed", 1, "seed of the weights and the token ids")
	batch := fs.Int("batch", 0, "sequences per step (0: the configuration's; 8 for a config.json)")
	seq := fs.Int("seq", 0, "tokens per sequence (0: the configuration's; 256 for a config.json)")
	asJSON := fs.Bool("json", false, "print the results as one JSON line on stdout (the rest goes to stderr)")
	var dec decodeFlags
	dec.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *mode != "train" && *mode != "score" && *mode != "decode" {
		return usagef("--mode %q: want train, score or decode", *mode)
	}
	if err := dec.check(); *mode == "decode" && err != nil {
		return err
	}
	if *steps < 1 || *warmup < 0 {
		return usagef("--steps must be ≥ 1 and --warmup ≥ 0")
	}
	prec, err := df.prec()
	if err != nil {
		return err
	}
	c, B, T, err := benchModelConfig(*cfgName, *batch, *seq)
	if err != nil {
		return err
	}
	out := stdout
	if *asJSON {
		out = stderr
	}

	// The plan first: what this run will allocate, before anything is.
	var plan model.Plan
	var gcfg generate.Config
	switch *mode {
	case "train":
		plan = c.TrainingPlan(B*T, B, false, prec)
	case "score":
		plan.Add(c.WeightsPlan("parameters", model.Options{Precision: prec})...)
		plan.Add(c.ActivationPlan(B*T, B, prec)...)
	case "decode":
		if gcfg, err = dec.engineConfig(c); err != nil {
			return err
		}
		// Not frozen: RandomInit draws the float32 master weights and casts the bf16 copy from them.
		plan.Add(c.WeightsPlan("parameters", model.Options{Precision: prec})...)
		plan.Add(gcfg.Plan("generation", c, prec)...)
	}
	shape := fmt.Sprintf("batch %d × %d tokens", B, T)
	if *mode == "decode" {
		shape = dec.String()
	}
	fmt.Fprintf(out, "model %s: qwen2 hidden %d, %d layers, %d/%d heads (head_dim %d), intermediate %d, vocab %d; %s; %s in %s\n",
		*cfgName, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.Intermediate, c.Vocab, shape, *mode, prec)
	fmt.Fprintln(out, "memory plan:")
	if err := plan.Write(out); err != nil {
		return err
	}

	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	if err := plan.Check(d.Info().FreeMemory); err != nil {
		return err
	}
	m, err := model.NewWith(d, c, model.Options{Precision: prec})
	if err != nil {
		return err
	}
	defer m.Free()
	if err := model.RandomInit(m, *seed, 0.02); err != nil {
		return err
	}
	if *mode == "decode" {
		res, err := dec.run(m, gcfg, *seed, *warmup, *steps, out)
		if err != nil {
			return err
		}
		res.Config, res.Params, res.PlanBytes = *cfgName, m.Layout.NumParams(), plan.Total()
		_, res.DevicePeak = d.MemoryInUse()
		return writeJSONLine(stdout, *asJSON, res)
	}
	ids := make([]int32, B*T)
	rng := rand.New(rand.NewPCG(*seed, 0xba7c4))
	for i := range ids {
		ids[i] = int32(rng.IntN(c.Vocab))
	}
	lens := make([]int, B)
	for i := range lens {
		lens[i] = T
	}

	var step func() (float64, error)
	switch *mode {
	case "train":
		sched, err := train.NewSchedule(1e-4, 1<<30, 0, 1) // constant 1e-4: no warmup, no decay in reach
		if err != nil {
			return err
		}
		tr, err := train.NewTrainer(m, train.AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, B*T, B)
		if err != nil {
			return err
		}
		defer tr.Free()
		step = func() (float64, error) {
			loss, _, err := tr.AccumulateNLL(ids, lens, 1)
			if err != nil {
				return 0, err
			}
			_, err = tr.Step()
			return loss, err
		}
	case "score":
		acts, err := m.NewActivations(B*T, B)
		if err != nil {
			return err
		}
		defer acts.Free()
		logp := make([]float32, B*T)
		step = func() (float64, error) {
			if err := m.Forward(acts, ids, lens); err != nil {
				return 0, err
			}
			if err := acts.LogProbs(logp); err != nil {
				return 0, err
			}
			var nll float64
			for i, lp := range logp {
				if i%T != T-1 {
					nll -= float64(lp)
				}
			}
			return nll / float64(B*(T-1)), nil
		}
	}

	res := benchResult{Impl: "serl", Config: *cfgName, Mode: *mode, Precision: prec.String(), Device: d.Info().Name, Threads: d.Info().Threads,
		Params: m.Layout.NumParams(), Batch: B, Seq: T, Warmup: *warmup, Steps: *steps, PlanBytes: plan.Total()}
	for i := 0; i < *warmup; i++ {
		loss, err := step()
		if err != nil {
			return err
		}
		if i == 0 {
			res.LossFirst = loss
		}
	}
	if df.opTable {
		d.SetProfiling(true) // the per-op table covers the timed steps only
	}
	times := make([]time.Duration, *steps)
	// Heap allocations, step by step: ReadMemStats flushes every P's cache, so the count is exact; it
	// stops the world for microseconds, nothing beside steps of milliseconds.
	var before, after runtime.MemStats
	var ms0, ms1 runtime.MemStats
	var ru0, ru1 syscall.Rusage
	runtime.ReadMemStats(&ms0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	for i := range times {
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		loss, err := step()
		if err != nil {
			return err
		}
		times[i] = time.Since(t0)
		runtime.ReadMemStats(&after)
		if after.Mallocs != before.Mallocs {
			res.AllocSteps++
		}
		if i == 0 && *warmup == 0 {
			res.LossFirst = loss
		}
		res.LossLast = loss
	}
	total := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	cpu := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	res.CPUMsPerStep = (cpu(ru1) - cpu(ru0)).Seconds() * 1e3 / float64(*steps)

	res.MsPerStep = total.Seconds() * 1e3 / float64(*steps)
	res.MsMin = slices.Min(times).Seconds() * 1e3
	res.MsMax = slices.Max(times).Seconds() * 1e3
	res.TokensPerSec = float64(B*T) * float64(*steps) / total.Seconds()
	res.FlopsPerToken = flopsPerToken(c, res.Params, T, *mode == "train")
	res.ModelTFLOPs = res.FlopsPerToken * res.TokensPerSec / 1e12
	res.AllocsPerStep = float64(ms1.Mallocs-ms0.Mallocs) / float64(*steps)
	res.PeakRSS, err = peakRSS()
	if err != nil {
		return err
	}
	res.RSSOverPlan = float64(res.PeakRSS) / float64(res.PlanBytes)
	_, res.DevicePeak = d.MemoryInUse()

	fmt.Fprintf(out, "loss        %.4f → %.4f\n", res.LossFirst, res.LossLast)
	fmt.Fprintf(out, "step        %.1f ms mean (min %.1f, max %.1f) over %d steps after %d warmup\n", res.MsPerStep, res.MsMin, res.MsMax, *steps, *warmup)
	fmt.Fprintf(out, "throughput  %.0f tokens/s (%d threads; %.1f CPU-ms per step); %.3g model TFLOP/s\n", res.TokensPerSec, res.Threads, res.CPUMsPerStep, res.ModelTFLOPs)
	fmt.Fprintf(out, "memory      peak RSS %.1f MiB = %.2f× the plan's %.1f MiB (device allocations peaked at %.1f MiB)\n",
		float64(res.PeakRSS)/(1<<20), res.RSSOverPlan, float64(res.PlanBytes)/(1<<20), float64(res.DevicePeak)/(1<<20))
	fmt.Fprintf(out, "go heap     %.2f allocations per step (%d of %d steps allocated)\n", res.AllocsPerStep, res.AllocSteps, *steps)
	return writeJSONLine(stdout, *asJSON, res)
}

// writeJSONLine prints v as one JSON line when asked (--json).
func writeJSONLine(w io.Writer, asJSON bool, v any) error {
	if !asJSON {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// flopsPerToken is the model FLOPs of one token of a step, the count MFU is quoted in (llm.c's and
// PaLM's): 2N per token for the forward pass's matrix products over all N parameters (a tied embedding
// counted once: it is the output head's product), plus 2·L·(heads·head_dim)·T for attention's two
// products over a context of T tokens; training is three times the forward (backward = 2 forwards).
func flopsPerToken(c model.Config, params, seq int, train bool) float64 {
	f := 2*float64(params) + 2*float64(c.Layers)*float64(c.Heads*c.HeadDim)*float64(seq)
	if train {
		f *= 3
	}
	return f
}

// benchModelConfig resolves --config (a name of benchConfigs or a config.json path) and the batch shape.
func benchModelConfig(name string, batch, seq int) (model.Config, int, int, error) {
	var data []byte
	B, T := 8, 256
	if bc, ok := benchConfigs[name]; ok {
		data, B, T = bc.json(), bc.batch, bc.seq
	} else if strings.ContainsAny(name, "/.") {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return model.Config{}, 0, 0, err
		}
	} else {
		return model.Config{}, 0, 0, usagef("--config %q: want S, M or a config.json path", name)
	}
	if batch > 0 {
		B = batch
	}
	if seq > 0 {
		T = seq
	}
	if B < 1 || T < 2 {
		return model.Config{}, 0, 0, usagef("--batch %d --seq %d: want at least one sequence of at least 2 tokens", B, T)
	}
	c, err := model.ParseConfig(data, name)
	if err != nil {
		return model.Config{}, 0, 0, err
	}
	if T > c.MaxPositions {
		return model.Config{}, 0, 0, usagef("--seq %d exceeds max_position_embeddings %d", T, c.MaxPositions)
	}
	return c, B, T, nil
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
			return 0, fmt.Errorf("peak RSS: cannot read %q", sc.Text())
		}
	}
	return 0, fmt.Errorf("peak RSS: no VmHWM in /proc/self/status")
}
