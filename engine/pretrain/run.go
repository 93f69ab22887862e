package pretrain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/modelpack"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/internal/atomicfile"
	"github.com/serl-go/serl/kernels"
)

// Files of a run folder.
const (
	ConfigFile      = "pretrain.json" // the run's Config
	TokenizerDir    = "tokenizer"
	CheckpointDir   = "checkpoint"
	ModelDir        = "model"         // the final model, a Hugging Face folder with its tokenizer
	PackedModel     = "model.tar.zst" // the final model packed (modelpack): engine/builtin's Archive
	MetricsFile     = "metrics.jsonl"
	ChartFile       = "loss.png"
	EvalFile        = "eval.json" // the final held-out report
	ResponsesFile   = "eval_responses.jsonl"
	stateFile       = "state.json"
	optimizerFile   = "optimizer.bin"
	checkpointModel = "model"
)

// Event reports progress: setup messages, every step, and evaluations.
type Event struct {
	Message string // a setup line, or "" for a step
	Step    int    // steps done
	Steps   int
	Loss    float64
	LR      float64
	Grad    float64
	// Tokens and Targets are this step's tokens and loss-bearing tokens; TokensPerSec counts all tokens.
	Tokens, Targets int
	TokensPerSec    float64
	Elapsed         time.Duration
	Eval            *evaluate.Report // set on the step that evaluated
	Saved           bool             // a checkpoint was written after this step
}

// Run is one pretraining run in a folder.
type Run struct {
	Dir     string
	Config  Config
	Source  Source
	HeldOut []evaluate.Problem // evaluated every EvalEvery steps (greedy pass@1, chat prompts)
	Exclude []evaluate.Problem // never trained on
	Report  func(Event)
}

func (r *Run) say(format string, a ...any) {
	if r.Report != nil {
		r.Report(Event{Message: fmt.Sprintf(format, a...)})
	}
}

// Train runs (or, with resume, continues) the run on d. When ctx is cancelled it finishes the current
// step, writes a checkpoint and returns ctx's error.
func (r *Run) Train(ctx context.Context, d *kernels.Device, resume bool) error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	var st state
	if resume {
		var err error
		if r.Config, err = readConfig(filepath.Join(r.Dir, ConfigFile)); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
		if st, err = readState(filepath.Join(r.Dir, CheckpointDir, stateFile)); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
	} else {
		if _, err := os.Stat(filepath.Join(r.Dir, CheckpointDir)); err == nil {
			return fmt.Errorf("pretrain: %s already holds a checkpoint: resume it or choose another folder", r.Dir)
		}
		if err := writeJSONAtomic(filepath.Join(r.Dir, ConfigFile), r.Config); err != nil {
			return err
		}
	}
	cfg := r.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	corpus := NewCorpus(r.Source, cfg.Seed, cfg.SelfInstructShare, r.Exclude)
	corpus.MinNew, corpus.MaxNew = cfg.InstructMinNew, cfg.InstructMaxNew
	corpus.LevelWeights = cfg.LevelWeights
	corpus.DirectShare, corpus.ListShare, corpus.DirectEndings = cfg.DirectShare, cfg.ListShare, cfg.DirectEndings

	tok, err := r.tokenizer(corpus, resume)
	if err != nil {
		return err
	}
	enc, err := NewEncoder(tok)
	if err != nil {
		return err
	}
	enc.ProblemLoss = cfg.ProblemLoss
	var m *model.Model
	if resume {
		m, err = model.Load(d, filepath.Join(r.Dir, CheckpointDir, checkpointModel))
	} else {
		m, err = r.newModel(d, tok)
	}
	if err != nil {
		return err
	}
	defer m.Free()
	// Saved models carry the tokenizer files (model.Save copies them from SourceDir).
	m.SourceDir = filepath.Join(r.Dir, TokenizerDir)

	plan := m.Config.TrainingPlan(cfg.MicroTokens, cfg.MicroSeqs, false)
	r.say("model: %d parameters, vocab %d; training memory %.1f MiB", m.Layout.NumParams(), m.Config.Vocab,
		float64(plan.Total())/(1<<20))
	sched, err := train.NewSchedule(cfg.LR, cfg.Steps, cfg.WarmupRatio, cfg.MinLRRatio)
	if err != nil {
		return err
	}
	tr, err := train.NewTrainer(m, train.AdamWConfig{Schedule: sched, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: 1e-8,
		WeightDecay: cfg.WeightDecay, ClipNorm: cfg.ClipNorm}, cfg.MicroTokens, cfg.MicroSeqs)
	if err != nil {
		return err
	}
	defer tr.Free()
	metrics, err := openMetrics(filepath.Join(r.Dir, MetricsFile), st.Step, resume)
	if err != nil {
		return err
	}
	defer metrics.Close()
	if resume {
		if err := loadOptimizer(filepath.Join(r.Dir, CheckpointDir, optimizerFile), tr.Opt); err != nil {
			return err
		}
		tr.Opt.SetSteps(st.Step)
		r.say("resumed at step %d of %d (document %d)", st.Step, cfg.Steps, st.NextDoc)
	}

	ev := &evaluate.Evaluator{Model: m, Decoder: tok,
		Prompt: evaluate.ChatPrompt(tok, enc.Template, enc.Options, evaluate.SystemPrompt),
		Options: evaluate.Options{MaxNewTokens: cfg.EvalMaxNewTokens, MaxBatch: cfg.EvalMaxBatch,
			StopIDs: evaluate.StopIDs(m.Config, tok)}}
	heldOut := r.HeldOut
	if cfg.EvalProblems > 0 && len(heldOut) > cfg.EvalProblems {
		heldOut = heldOut[:cfg.EvalProblems]
	}

	start := time.Now()
	saved := st.Step
	for st.Step < cfg.Steps {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		docs, next, err := r.batch(corpus, enc, st.NextDoc)
		if err != nil {
			return err
		}
		ss, err := r.step(tr, docs)
		if err != nil {
			return err
		}
		st.NextDoc = next
		st.Step++
		st.Tokens += int64(ss.tokens)
		dt := time.Since(t0)
		st.Seconds += dt.Seconds()
		e := Event{Step: st.Step, Steps: cfg.Steps, Loss: ss.loss, LR: ss.lr, Grad: ss.grad, Tokens: ss.tokens,
			Targets: ss.targets, TokensPerSec: float64(ss.tokens) / dt.Seconds(), Elapsed: time.Since(start)}
		if cfg.LogEvery > 0 && st.Step%cfg.LogEvery == 0 || st.Step == cfg.Steps {
			if err := metrics.step(e, st); err != nil {
				return err
			}
		}
		if len(heldOut) > 0 && (cfg.EvalEvery > 0 && st.Step%cfg.EvalEvery == 0 || st.Step == cfg.Steps) {
			rep, _, err := ev.Run(heldOut, nil)
			if err != nil {
				return err
			}
			e.Eval = &rep
			if err := metrics.eval(st.Step, rep); err != nil {
				return err
			}
			if err := writeJSONAtomic(filepath.Join(r.Dir, EvalFile), map[string]any{"step": st.Step, "report": rep}); err != nil {
				return err
			}
		}
		if cfg.SaveEvery > 0 && st.Step%cfg.SaveEvery == 0 {
			if err := r.checkpoint(m, tr, st); err != nil {
				return err
			}
			saved = st.Step
			e.Saved = true
			// The chart follows the checkpoints, so a long run can be watched.
			if err := metrics.chart(filepath.Join(r.Dir, ChartFile)); err != nil {
				return err
			}
		}
		if r.Report != nil {
			r.Report(e)
		}
	}
	if st.Step != saved {
		if err := r.checkpoint(m, tr, st); err != nil {
			return err
		}
		r.say("checkpoint at step %d", st.Step)
	}
	if err := metrics.chart(filepath.Join(r.Dir, ChartFile)); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := m.Save(filepath.Join(r.Dir, ModelDir), safetensors.F32); err != nil {
		return err
	}
	packed := filepath.Join(r.Dir, PackedModel)
	if err := atomicfile.Write(packed, func(w io.Writer) error { return modelpack.Pack(filepath.Join(r.Dir, ModelDir), w) }); err != nil {
		return err
	}
	r.say("model saved to %s and packed in %s", filepath.Join(r.Dir, ModelDir), packed)
	return nil
}

// tokenizer trains serl's BPE tokenizer on the first TokenizerDocs documents and saves it with the
// ChatML template, or loads the one a resumed run made.
func (r *Run) tokenizer(corpus *Corpus, resume bool) (*tokenizer.Tokenizer, error) {
	dir := filepath.Join(r.Dir, TokenizerDir)
	path := filepath.Join(dir, "tokenizer.json")
	if resume {
		return tokenizer.Load(path)
	}
	t0 := time.Now()
	tok, err := tokenizer.Train(corpus.Texts(r.Config.TokenizerDocs), r.Config.VocabSize,
		tokenizer.TrainOptions{SpecialTokens: SpecialTokens})
	if err != nil {
		return nil, err
	}
	if err := tok.Save(dir, tokenizer.Config{ChatTemplate: chat.ChatMLTemplate, EOSToken: "<|im_end|>",
		PadToken: "<|endoftext|>", ModelMaxLength: r.Config.MaxPositions}); err != nil {
		return nil, err
	}
	r.say("tokenizer: %d tokens from %d documents in %.1fs", tok.VocabSize(), r.Config.TokenizerDocs, time.Since(t0).Seconds())
	// Reload from disk so the run uses exactly what was saved.
	return tokenizer.Load(path)
}

func (r *Run) newModel(d *kernels.Device, tok *tokenizer.Tokenizer) (*model.Model, error) {
	eot, _ := tok.TokenID("<|endoftext|>")
	imEnd, _ := tok.TokenID("<|im_end|>")
	c, err := model.ParseConfig(r.Config.modelConfig(tok.VocabSize(), eot, imEnd, eot), "pretrain config")
	if err != nil {
		return nil, err
	}
	m, err := model.New(d, c)
	if err != nil {
		return nil, err
	}
	if err := model.RandomInit(m, r.Config.Seed, r.Config.InitStd); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// batch collects whole documents from index next until the step has BatchTokens tokens; documents
// longer than MaxSeqLen are skipped.
func (r *Run) batch(corpus *Corpus, enc *Encoder, next uint64) ([]Doc, uint64, error) {
	var docs []Doc
	tokens := 0
	for tokens < r.Config.BatchTokens {
		doc, err := enc.Encode(corpus.Conversation(next))
		if err != nil {
			return nil, 0, fmt.Errorf("pretrain: document %d: %w", next, err)
		}
		next++
		if len(doc.Ids) > r.Config.MaxSeqLen || doc.LossFrom >= len(doc.Ids) {
			continue
		}
		docs = append(docs, doc)
		tokens += len(doc.Ids)
	}
	return docs, next, nil
}

type stepStats struct {
	loss, lr, grad  float64
	tokens, targets int
}

// step packs the documents into micro-batches in order and takes one optimizer step on the mean NLL
// over every target token of the step: each micro-batch's own mean is weighted by its share of them.
func (r *Run) step(tr *train.Trainer, docs []Doc) (stepStats, error) {
	type micro struct {
		ids     []int32
		lens    []int
		from    []int
		targets int
	}
	var mbs []micro
	var cur micro
	total := 0
	for _, d := range docs {
		if len(cur.lens) > 0 && (len(cur.ids)+len(d.Ids) > r.Config.MicroTokens || len(cur.lens) == r.Config.MicroSeqs) {
			mbs = append(mbs, cur)
			cur = micro{}
		}
		cur.ids = append(cur.ids, d.Ids...)
		cur.lens = append(cur.lens, len(d.Ids))
		cur.from = append(cur.from, d.LossFrom)
		n := len(d.Ids) - max(d.LossFrom, 1)
		cur.targets += n
		total += n
	}
	mbs = append(mbs, cur)
	var ss stepStats
	for _, mb := range mbs {
		w := float64(mb.targets) / float64(total)
		loss, _, err := tr.AccumulateMaskedNLL(mb.ids, mb.lens, mb.from, w)
		if err != nil {
			return ss, err
		}
		ss.loss += w * loss
		ss.tokens += len(mb.ids)
	}
	ss.targets = total
	st, err := tr.Step()
	if err != nil {
		return ss, err
	}
	ss.lr, ss.grad = st.LR, st.GradNorm
	return ss, nil
}

// checkpoint writes the model, the optimizer moments and the run state into a fresh folder and swaps
// it in with renames, so the checkpoint folder is always a complete one.
func (r *Run) checkpoint(m *model.Model, tr *train.Trainer, st state) error {
	final := filepath.Join(r.Dir, CheckpointDir)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := m.Save(filepath.Join(tmp, checkpointModel), safetensors.F32); err != nil {
		return err
	}
	if err := saveOptimizer(filepath.Join(tmp, optimizerFile), tr.Opt); err != nil {
		return err
	}
	if err := writeJSONAtomic(filepath.Join(tmp, stateFile), st); err != nil {
		return err
	}
	old := final + ".old"
	os.RemoveAll(old)
	if err := os.Rename(final, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return os.RemoveAll(old)
}
