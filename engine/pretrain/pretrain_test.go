package pretrain

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/checkpoint"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/modelpack"
	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// toySource is a tiny world: "Name has a apples. Name gets b more. How many apples does Name have?"
func toySource(seed uint64, level int) evaluate.Problem {
	names := []string{"Tom", "Ana", "Leo", "Mia"}
	a, b := int(seed%7)+1, int(seed/7%5)+1
	n := names[seed/35%4]
	return evaluate.Problem{
		Problem:  fmt.Sprintf("%s has %d apples. %s gets %d more. How many apples does %s have?", n, a, n, b, n),
		Answer:   fmt.Sprint(a + b),
		Solution: fmt.Sprintf("Step 1: %s has %d + %d = %d apples.\nThe answer is \\boxed{%d}.", n, a, b, a+b, a+b),
		Level:    level,
	}
}

func TestCorpusDocuments(t *testing.T) {
	excluded := toySource(0, 1)
	c := NewCorpus(toySource, 3, 0.5, []evaluate.Problem{excluded})
	c2 := NewCorpus(toySource, 3, 0.5, []evaluate.Problem{excluded})
	var kinds [2]int
	for i := range uint64(200) {
		conv := c.Conversation(i)
		require.Equal(t, conv, c2.Conversation(i), "document %d depends only on seed and index", i)
		kinds[conv.Kind]++
		for _, m := range conv.Messages {
			assert.NotContains(t, m.Content, excluded.Problem)
		}
		assert.NotContains(t, conv.Assistant, excluded.Problem)
		require.Len(t, conv.Messages, 2)
		switch conv.Kind {
		case Solve:
			assert.Equal(t, evaluate.SystemPrompt, conv.Messages[0].Content)
			assert.Contains(t, conv.Assistant, `\boxed{`)
		case SelfInstruct:
			tmpl := selfinstruct.DefaultTemplate()
			assert.Equal(t, tmpl.System, conv.Messages[0].Content)
			user := conv.Messages[1].Content
			assert.True(t, strings.HasPrefix(user, tmpl.User+"1. "))
			assert.True(t, strings.HasSuffix(user, "\n9."), user)
			assert.Equal(t, 8, strings.Count(user, "?\n"))
			assert.True(t, strings.HasPrefix(conv.Assistant, "9. "), conv.Assistant)
			// What the model learns to write is what the official parser and rule filters accept.
			cands := selfinstruct.ParseCompletion(conv.Assistant, selfinstruct.CapitalizeFirst)
			require.GreaterOrEqual(t, len(cands), c.MinNew)
			require.LessOrEqual(t, len(cands), c.MaxNew)
			for _, cd := range cands {
				assert.Equal(t, selfinstruct.Accepted, cd.Reason, cd.Text)
				assert.True(t, strings.HasSuffix(cd.Text, "?"), cd.Text)
			}
		}
	}
	assert.InDelta(t, 100, kinds[SelfInstruct], 30)
	assert.NotEqual(t, c.Conversation(5), NewCorpus(toySource, 4, 0.5, nil).Conversation(5), "the seed matters")

	// Level weights: level 2 three times as often as level 1, never level 3.
	w := NewCorpus(toySource, 3, 0, nil)
	w.LevelWeights = []float64{1, 3, 0}
	var levels [4]int
	for i := range uint64(4000) {
		levels[w.problem(i, 0).Level]++
	}
	assert.Zero(t, levels[0]+levels[3])
	assert.InDelta(t, 3000, levels[2], 120)
}

func trainToyTokenizer(t *testing.T, c *Corpus) *tokenizer.Tokenizer {
	tok, err := tokenizer.Train(c.Texts(40), 320, tokenizer.TrainOptions{SpecialTokens: SpecialTokens})
	require.NoError(t, err)
	return tok
}

func TestCorpusSolutionStyles(t *testing.T) {
	plain := NewCorpus(toySource, 3, 0.2, nil)
	styled := NewCorpus(toySource, 3, 0.2, nil)
	styled.DirectShare, styled.ListShare = 0.4, 0.3
	var solve, direct, list int
	for i := range uint64(600) {
		p, d := plain.Conversation(i), styled.Conversation(i)
		require.Equal(t, p.Kind, d.Kind, "document %d: the style draws after the kind", i)
		require.Equal(t, p.Messages, d.Messages, "document %d: same problem", i)
		if p.Kind != Solve {
			require.Equal(t, p.Assistant, d.Assistant, "document %d: self-instruction untouched", i)
			continue
		}
		solve++
		switch {
		case d.Assistant == p.Assistant:
			require.True(t, strings.HasPrefix(d.Assistant, "Step 1: "), d.Assistant)
		case strings.HasPrefix(d.Assistant, "1) "):
			list++
			// The same working, labelled differently.
			require.Equal(t, p.Assistant, strings.ReplaceAll(strings.ReplaceAll(d.Assistant, "1) ", "Step 1: "), "\n2) ", "\nStep 2: "))
		default:
			direct++
			// The whole direct answer is the worked solution's last line: no working, same answer.
			require.True(t, strings.HasSuffix(p.Assistant, "\n"+d.Assistant), "%q vs %q", d.Assistant, p.Assistant)
			require.True(t, strings.HasPrefix(d.Assistant, `The answer is \boxed{`), d.Assistant)
		}
	}
	assert.InDelta(t, 0.4, float64(direct)/float64(solve), 0.07, "%d of %d solving documents direct", direct, solve)
	assert.InDelta(t, 0.3, float64(list)/float64(solve), 0.07, "%d of %d solving documents as lists", list, solve)
	assert.Equal(t, "no box here", directAnswer("no box here"), "a solution without a boxed last line stays whole")
	assert.Equal(t, "1) a.\n2) b.\nIn Step 3: c", asList("Step 1: a.\nStep 2: b.\nIn Step 3: c"), "labels at line starts only")
}

func TestCorpusDirectEndings(t *testing.T) {
	// toySource's questions end in "have"; half of them are rewritten to end in "now".
	src := func(seed uint64, level int) evaluate.Problem {
		p := toySource(seed, level)
		if seed%2 == 0 {
			p.Problem = strings.TrimSuffix(p.Problem, "?") + " now?"
		}
		return p
	}
	mixed := NewCorpus(src, 5, 0, nil)
	mixed.DirectShare, mixed.ListShare = 0.4, 0.3
	keyed := NewCorpus(src, 5, 0, nil)
	keyed.DirectShare, keyed.ListShare, keyed.DirectEndings = 0.4, 0.3, []string{"now", "then"}
	var n, direct, list [2]int // by ending: 0 "now", 1 other
	for i := range uint64(1200) {
		m, k := mixed.Conversation(i), keyed.Conversation(i)
		require.Equal(t, m.Messages, k.Messages, "document %d: same problem", i)
		w := 1
		if QuestionEnding(k.Messages[1].Content) == "now" {
			w = 0
			require.Equal(t, m.Assistant, k.Assistant, "document %d: a direct ending keeps its draw", i)
		}
		n[w]++
		switch {
		case strings.HasPrefix(k.Assistant, "The answer is"):
			direct[w]++
		case strings.HasPrefix(k.Assistant, "1) "):
			list[w]++
		}
	}
	require.Greater(t, n[0], 400)
	require.Greater(t, n[1], 400)
	assert.Zero(t, direct[1], "other endings never answer at once")
	assert.InDelta(t, 0.5, float64(list[1])/float64(n[1]), 0.07, "other endings: lists and steps keep their 1:1 ratio")
	assert.InDelta(t, 0.4, float64(direct[0])/float64(n[0]), 0.07, "direct endings: the three-habit mix")

	for text, want := range map[string]string{
		"Tom has 3 apples. How many apples does Tom have now?": "now",
		"What is the value of (21 + 3) * 2?":                   "of",
		"Compute 43 + 5.":                                      "compute",
		"How far does it go in km?":                            "km",
		"12 + 3":                                               "",
		"":                                                     "",
	} {
		assert.Equal(t, want, QuestionEnding(text), "%q", text)
	}
}

func TestEncoderMasksThePrompt(t *testing.T) {
	c := NewCorpus(toySource, 1, 0.5, nil)
	tok := trainToyTokenizer(t, c)
	enc, err := NewEncoder(tok)
	require.NoError(t, err)
	imEnd, _ := tok.TokenID("<|im_end|>")
	for i := range uint64(20) {
		conv := c.Conversation(i)
		doc, err := enc.Encode(conv)
		require.NoError(t, err)
		prompt, err := tok.Decode(doc.Ids[:doc.LossFrom], false)
		require.NoError(t, err)
		assert.True(t, strings.HasSuffix(prompt, "<|im_end|>\n<|im_start|>assistant\n"), prompt)
		assert.True(t, strings.HasPrefix(prompt, "<|im_start|>system\n"+conv.Messages[0].Content+"<|im_end|>\n"))
		resp, err := tok.Decode(doc.Ids[doc.LossFrom:], false)
		require.NoError(t, err)
		assert.Equal(t, conv.Assistant+"<|im_end|>", resp)
		assert.Equal(t, imEnd, doc.Ids[len(doc.Ids)-1])
	}
}

// With ProblemLoss a solving document's loss starts at the problem text; self-instruction documents
// keep the loss on the assistant turn.
func TestEncoderProblemLoss(t *testing.T) {
	c := NewCorpus(toySource, 1, 0.5, nil)
	tok := trainToyTokenizer(t, c)
	enc, err := NewEncoder(tok)
	require.NoError(t, err)
	enc.ProblemLoss = true
	kinds := map[Kind]int{}
	for i := range uint64(20) {
		conv := c.Conversation(i)
		doc, err := enc.Encode(conv)
		require.NoError(t, err)
		kinds[doc.Kind]++
		prompt, err := tok.Decode(doc.Ids[:doc.LossFrom], false)
		require.NoError(t, err)
		trained, err := tok.Decode(doc.Ids[doc.LossFrom:], false)
		require.NoError(t, err)
		if doc.Kind == SelfInstruct {
			assert.Equal(t, conv.Assistant+"<|im_end|>", trained)
			continue
		}
		assert.True(t, strings.HasSuffix(prompt, "<|im_end|>\n<|im_start|>user\n"), prompt)
		assert.Equal(t, conv.Messages[1].Content+"<|im_end|>\n<|im_start|>assistant\n"+conv.Assistant+"<|im_end|>", trained)
	}
	assert.Positive(t, kinds[Solve])
	assert.Positive(t, kinds[SelfInstruct])
}

func testDevice(t *testing.T) *kernels.Device { return testenv.CPU(t) }

func toyConfig() Config {
	c := DefaultConfig()
	c.Steps, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Intermediate = 6, 32, 1, 2, 1, 64
	c.MaxPositions, c.MaxSeqLen, c.VocabSize, c.TokenizerDocs = 512, 512, 320, 40
	c.BatchTokens, c.MicroTokens, c.MicroSeqs = 700, 512, 8
	c.EvalEvery, c.EvalProblems, c.EvalMaxNewTokens, c.SaveEvery, c.EvalMaxBatch = 3, 4, 8, 2, 8
	c.SelfInstructShare = 0.3
	return c
}

func readParams(t *testing.T, dir string) []float32 {
	m, err := model.Load(testDevice(t), dir)
	require.NoError(t, err)
	defer m.Free()
	p := testenv.Read[float32](t, m.Params.Data)
	require.Len(t, p, m.Layout.Total)
	return p
}

// A run interrupted after a checkpoint and resumed ends with exactly the weights and the metrics of
// an uninterrupted run.
func TestResumeIsExact(t *testing.T) {
	d := testDevice(t)
	held := []evaluate.Problem{toySource(1, 1), toySource(2, 1), toySource(3, 1), toySource(4, 1)}
	base := t.TempDir()

	full := &Run{Dir: filepath.Join(base, "full"), Config: toyConfig(), Source: toySource, HeldOut: held}
	var losses []float64
	var evals int
	full.Report = func(e Event) {
		if e.Message == "" {
			losses = append(losses, e.Loss)
		}
		if e.Eval != nil {
			evals++
			assert.Equal(t, 4, e.Eval.Overall.N)
		}
	}
	require.NoError(t, full.Train(context.Background(), d, false))
	require.Len(t, losses, 6)
	assert.Equal(t, 2, evals)
	assert.Less(t, losses[5], losses[0], "the loss falls")

	ctx, cancel := context.WithCancel(context.Background())
	part := &Run{Dir: filepath.Join(base, "part"), Config: toyConfig(), Source: toySource, HeldOut: held}
	part.Config.SaveEvery = 0 // the interrupt itself must checkpoint
	part.Report = func(e Event) {
		if e.Step == 3 {
			cancel()
		}
	}
	err := part.Train(ctx, d, false)
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	_, err = os.Stat(filepath.Join(part.Dir, ModelDir))
	assert.True(t, os.IsNotExist(err), "an interrupted run writes no final model")
	ck, err := checkpoint.Open(part.Dir)
	require.NoError(t, err)
	var st state
	require.NoError(t, ck.ReadState(&st))
	assert.Equal(t, 3, st.Step)

	require.Error(t, part.Train(context.Background(), d, false), "a fresh run refuses a folder with a checkpoint")
	// The resumed run reads its settings back: a different config passed in is ignored.
	resumed := &Run{Dir: part.Dir, Config: DefaultConfig(), Source: toySource, HeldOut: held}
	require.NoError(t, resumed.Train(context.Background(), d, true))
	assert.Equal(t, readParams(t, filepath.Join(full.Dir, ModelDir)), readParams(t, filepath.Join(part.Dir, ModelDir)))

	strip := func(dir string) []string {
		b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
		require.NoError(t, err)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			// Timing fields differ between runs; everything else must match.
			var keep []string
			for _, f := range strings.Split(l, ",") {
				if !strings.Contains(f, "tokens_per_s") && !strings.Contains(f, "train_seconds") {
					keep = append(keep, f)
				}
			}
			out = append(out, strings.Join(keep, ","))
		}
		return out
	}
	assert.Equal(t, strip(full.Dir), strip(part.Dir))

	f, err := os.Open(filepath.Join(full.Dir, ChartFile))
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, 800, img.Bounds().Dx())
	_, err = os.Stat(filepath.Join(full.Dir, PassChartFile))
	assert.NoError(t, err)
	// The final model folder loads with its tokenizer and chat template.
	_, err = os.Stat(filepath.Join(full.Dir, EvalFile))
	assert.NoError(t, err)
	for _, name := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		_, err := os.Stat(filepath.Join(full.Dir, ModelDir, name))
		assert.NoError(t, err, name)
	}
	b, err := os.ReadFile(filepath.Join(full.Dir, ModelDir, "tokenizer_config.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "<|im_start|>")
	// The packed model unpacks to the same folder.
	packed, err := os.ReadFile(filepath.Join(full.Dir, PackedModel))
	require.NoError(t, err)
	dir, err := modelpack.Extract(packed, t.TempDir(), nil)
	require.NoError(t, err)
	for _, name := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		want, _ := os.ReadFile(filepath.Join(full.Dir, ModelDir, name))
		have, _ := os.ReadFile(filepath.Join(dir, name))
		assert.Equal(t, want, have, name)
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for _, mut := range []func(*Config){
		func(c *Config) { c.Steps = 0 },
		func(c *Config) { c.KVHeads = 3 },
		func(c *Config) { c.VocabSize = 200 },
		func(c *Config) { c.MicroTokens = c.MaxSeqLen - 1 },
		func(c *Config) { c.MicroSeqs = 0 },
		func(c *Config) { c.SelfInstructShare = 1.5 },
		func(c *Config) { c.DirectShare = -0.1 },
		func(c *Config) { c.DirectShare, c.ListShare = 0.6, 0.5 },
		func(c *Config) { c.DirectEndings = []string{"now", "Have"} },
		func(c *Config) { c.DirectEndings = []string{""} },
		func(c *Config) { c.MaxSeqLen = c.MaxPositions + 1 },
		func(c *Config) { c.LevelWeights = []float64{0, 0} },
		func(c *Config) { c.LevelWeights = []float64{1, -1} },
	} {
		c := DefaultConfig()
		mut(&c)
		assert.Error(t, c.Validate())
	}
}

// A final model over what a packed model may hold is left unpacked, saying so, rather than compressed
// for minutes into an archive that could not be unpacked. (A sparse file stands for the weights.)
func TestPackLeavesLargeModelsUnpacked(t *testing.T) {
	var said []string
	r := &Run{Dir: t.TempDir(), Report: func(e Event) { said = append(said, e.Message) }}
	dir := filepath.Join(r.Dir, ModelDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, name := range []string{"config.json", "tokenizer.json"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o644))
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(modelpack.MaxUnpacked))
	require.NoError(t, f.Close())
	require.NoError(t, r.pack())
	require.NoFileExists(t, filepath.Join(r.Dir, PackedModel))
	require.Len(t, said, 1)
	assert.Contains(t, said[0], "not packed: its 1024 MiB are over the 1024 MiB a packed model may hold")

	require.NoError(t, os.Truncate(filepath.Join(dir, "model.safetensors"), 100))
	require.NoError(t, r.pack())
	require.FileExists(t, filepath.Join(r.Dir, PackedModel))
	assert.Contains(t, said[1], "packed in")
}
