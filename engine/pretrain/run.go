package pretrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/checkpoint"
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
	ConfigFile    = "pretrain.json" // the run's Config
	TokenizerDir  = "tokenizer"
	CheckpointDir = checkpoint.Link // the current checkpoint (engine/checkpoint)
	ModelDir      = "model"         // the final model, a Hugging Face folder with its tokenizer
	PackedModel   = "model.tar.zst" // the final model packed (modelpack): engine/builtin's Archive
	MetricsFile   = "metrics.jsonl"
	ChartFile     = "loss.png"
	EvalFile      = "eval.json" // the final held-out report
	ResponsesFile = "eval_responses.jsonl"
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
//
// A new run's folder (it must not exist, or be empty) appears at once with its settings, tokenizer and
// the checkpoint of step 0 (checkpoint.Create); a resumed one is locked, so a second process on it
// fails at once, and continues from its current checkpoint, never from scratch.
func (r *Run) Train(ctx context.Context, d *kernels.Device, resume bool) error {
	var (
		lock *checkpoint.Lock
		st   state
		tok  *tokenizer.Tokenizer
		m    *model.Model
		tr   *train.Trainer
		ck   *checkpoint.Checkpoint
		err  error
	)
	defer func() {
		if tr != nil {
			tr.Free()
		}
		if m != nil {
			m.Free()
		}
		lock.Release()
	}()
	if resume {
		if lock, err = checkpoint.Acquire(r.Dir); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
		if r.Config, err = readConfig(filepath.Join(r.Dir, ConfigFile)); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
		if ck, err = checkpoint.Open(r.Dir); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
		if err := checkpoint.Clean(r.Dir); err != nil {
			return err
		}
		if err := ck.ReadState(&st); err != nil {
			return fmt.Errorf("pretrain: resume: %w", err)
		}
	}
	if !resume && r.Config.Init != "" {
		if r.Config, err = adoptInit(r.Config); err != nil {
			return err
		}
	}
	cfg := r.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	lora := cfg.LoRA() != nil
	corpus := NewCorpus(r.Source, cfg.Seed, cfg.SelfInstructShare, r.Exclude)
	corpus.MinNew, corpus.MaxNew = cfg.InstructMinNew, cfg.InstructMaxNew
	corpus.LevelWeights = cfg.LevelWeights
	corpus.DirectShare, corpus.ListShare, corpus.DirectEndings = cfg.DirectShare, cfg.ListShare, cfg.DirectEndings
	sched, err := train.NewSchedule(cfg.LR, cfg.Steps, cfg.WarmupRatio, cfg.MinLRRatio)
	if err != nil {
		return err
	}
	newTrainer := func() error {
		tr, err = train.NewTrainer(m, train.AdamWConfig{Schedule: sched, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: 1e-8,
			WeightDecay: cfg.WeightDecay, ClipNorm: cfg.ClipNorm}, cfg.MicroTokens, cfg.MicroSeqs)
		return err
	}
	if resume {
		if tok, err = tokenizer.Load(filepath.Join(r.Dir, TokenizerDir, "tokenizer.json")); err != nil {
			return err
		}
		if lora {
			m, err = r.loadBase(d, ck.ModelDir())
		} else {
			m, err = model.LoadWith(d, ck.ModelDir(), model.Options{Precision: cfg.precision()})
		}
		if err != nil {
			return err
		}
		if err := newTrainer(); err != nil {
			return err
		}
		if err := ck.ReadMoments(tr.Opt); err != nil {
			return err
		}
	} else {
		lock, err = checkpoint.Create(r.Dir, func(dir string) error {
			if err := writeJSONAtomic(filepath.Join(dir, ConfigFile), cfg); err != nil {
				return err
			}
			if cfg.Init != "" {
				if tok, err = r.initTokenizer(filepath.Join(dir, TokenizerDir)); err != nil {
					return err
				}
				if m, err = r.loadInit(d, dir); err != nil {
					return err
				}
			} else {
				if tok, err = r.trainTokenizer(corpus, filepath.Join(dir, TokenizerDir)); err != nil {
					return err
				}
				if m, err = r.newModel(d, tok); err != nil {
					return err
				}
			}
			m.SourceDir = filepath.Join(dir, TokenizerDir)
			if lora {
				m.SourceDir = filepath.Join(dir, BaseDir) // the checkpoints' adapters name their base
			}
			if err := newTrainer(); err != nil {
				return err
			}
			return checkpoint.Save(dir, 0, m, tr.Opt, st)
		})
		if err != nil {
			return fmt.Errorf("pretrain: %w", err)
		}
	}
	enc, err := NewEncoder(tok)
	if err != nil {
		return err
	}
	enc.ProblemLoss = cfg.ProblemLoss
	// Saved models carry the tokenizer files (model.Save copies them from SourceDir).
	m.SourceDir = filepath.Join(r.Dir, TokenizerDir)
	if lora {
		m.SourceDir = filepath.Join(r.Dir, BaseDir) // it has the same tokenizer files
	}
	// The model learns the chat format with serl's system prompt: its folder says so (serl.json).
	m.Files = map[string][]byte{evaluate.PromptFile: evaluate.PromptConfig{Mode: evaluate.ModeChat, System: evaluate.SystemPrompt}.Marshal()}

	plan := m.Config.TrainingPlan(cfg.MicroTokens, cfg.MicroSeqs, false, cfg.precision())
	if lc := cfg.LoRA(); lc != nil {
		plan = model.Plan{}
		plan.Add(m.Config.WeightsPlan("base (frozen)", model.Options{Precision: cfg.precision(), Frozen: true})...)
		plan.Add(m.Config.LoRAPlan(*lc, cfg.precision())...)
		plan.Add(m.Config.LoRAActivationPlan(cfg.MicroTokens, cfg.MicroSeqs, cfg.precision(), lc)...)
	}
	trained := m.Layout.NumParams()
	if ad := m.LoRA(); ad != nil {
		trained = ad.Layout.NumParams()
	}
	r.say("model: %d parameters (%d trained), vocab %d; training memory %.1f MiB", m.Layout.NumParams(), trained, m.Config.Vocab,
		float64(plan.Total())/(1<<20))
	metrics, err := openMetrics(filepath.Join(r.Dir, MetricsFile), st.Step, resume)
	if err != nil {
		return err
	}
	defer metrics.Close()
	if resume {
		if err := cutEval(filepath.Join(r.Dir, EvalFile), st.Step); err != nil {
			return err
		}
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
			rep, _, err := ev.Run(ctx, heldOut, nil)
			if ctx.Err() != nil {
				break // interrupted: the step is checkpointed below, its evaluation left out
			}
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
			if err := r.checkpoint(m, tr, st, metrics); err != nil {
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
		if err := r.checkpoint(m, tr, st, metrics); err != nil {
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
	if lora {
		// The adapters as a PEFT folder over base/, and the model folder is base + adapters merged
		// (model.LoadMerged, as serl merge): a plain model that evaluation, generation and the built-in
		// archive take as they take any pretrain output.
		adapters := filepath.Join(r.Dir, AdapterDir)
		if err := m.LoRA().Save(adapters, "../"+BaseDir); err != nil { // relative: the run folder can move
			return err
		}
		files := m.Files
		tr.Free()
		m.Free()
		tr = nil
		if m, err = model.LoadMerged(d, filepath.Join(r.Dir, BaseDir), adapters); err != nil {
			return err
		}
		m.SourceDir, m.Files = filepath.Join(r.Dir, TokenizerDir), files
		r.say("adapters saved to %s", adapters)
	}
	if err := m.Save(filepath.Join(r.Dir, ModelDir), safetensors.F32); err != nil {
		return err
	}
	return r.pack()
}

// pack packs the final model into PackedModel, the built-in model's form; a model over what a packed
// model may hold (modelpack.MaxUnpacked, e.g. a 0.5B-shaped body) is left unpacked, saying so, since
// its archive could not be unpacked (and compressing it would take minutes).
func (r *Run) pack() error {
	dir, packed := filepath.Join(r.Dir, ModelDir), filepath.Join(r.Dir, PackedModel)
	n, err := modelpack.Size(dir)
	if err != nil {
		return err
	}
	if n > modelpack.MaxUnpacked {
		r.say("model saved to %s; not packed: its %d MiB are over the %d MiB a packed model may hold", dir, n>>20, modelpack.MaxUnpacked>>20)
		return nil
	}
	if err := atomicfile.Write(packed, func(w io.Writer) error { return modelpack.Pack(dir, w) }); err != nil {
		return err
	}
	r.say("model saved to %s and packed in %s", dir, packed)
	return nil
}

// trainTokenizer trains serl's BPE tokenizer on the first TokenizerDocs documents and saves it into dir
// with the ChatML template.
func (r *Run) trainTokenizer(corpus *Corpus, dir string) (*tokenizer.Tokenizer, error) {
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
	return tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
}

func (r *Run) newModel(d *kernels.Device, tok *tokenizer.Tokenizer) (*model.Model, error) {
	eot, _ := tok.TokenID("<|endoftext|>")
	imEnd, _ := tok.TokenID("<|im_end|>")
	c, err := model.ParseConfig(r.Config.modelConfig(tok.VocabSize(), eot, imEnd, eot), "pretrain config")
	if err != nil {
		return nil, err
	}
	m, err := model.NewWith(d, c, model.Options{Precision: r.Config.precision()})
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

// checkpoint writes the model, the optimizer moments and the run state as the current checkpoint
// (engine/checkpoint: swapped in atomically against a kill at any point).
// The metrics lines of the steps it contains are made durable first.
func (r *Run) checkpoint(m *model.Model, tr *train.Trainer, st state, metrics *metrics) error {
	if err := metrics.f.Sync(); err != nil {
		return err
	}
	return checkpoint.Save(r.Dir, st.Step, m, tr.Opt, st)
}

// cutEval removes the final-evaluation file when it reports a step after the checkpoint's: the
// resumed run writes it again when it gets there.
func cutEval(path string, step int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var e struct {
		Step int `json:"step"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if e.Step > step {
		return os.Remove(path)
	}
	return nil
}
