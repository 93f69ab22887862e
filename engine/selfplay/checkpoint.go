package selfplay

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/serl-go/serl/engine/checkpoint"
	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/internal/crashpoint"
)

// Layout of a run directory (docs/RUNDIR.md).
const (
	configFile   = "config.json"
	referenceDir = "reference" // the frozen initial model, saved once at the start
)

// Start checks the settings and inputs, builds the runner, and only then creates the run directory
// (it must not exist, or be empty) with config.json, the reference model, in.RunFiles and the
// checkpoint of step 0, all at once (checkpoint.Create): a start that fails or is killed leaves no run
// directory behind. The runner owns the directory's lock until Free.
//
// In a data-parallel run every rank calls Start with the same arguments: rank 0 creates the directory,
// the others only build their runner, and all of them fail if one does.
func Start(path string, cfg Config, in Inputs) (*Runner, error) {
	c := in.comm()
	var r *Runner
	var err error
	if c.Rank() == 0 {
		r, err = start(path, cfg, in)
	} else if r, err = newRunner(cfg, in, State{}); err == nil {
		r.follow(path)
	}
	if err = agree(c, "starting the run", err); err != nil {
		if r != nil {
			r.Free()
		}
		return nil, err
	}
	return r, nil
}

func start(path string, cfg Config, in Inputs) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(path); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("selfplay: run directory %s exists and is not empty (use resume)", path)
	}
	r, err := newRunner(cfg, in, State{})
	if err != nil {
		return nil, err
	}
	lock, err := checkpoint.Create(path, func(dir string) error {
		d := &runDir{path: dir}
		if err := d.writeJSON(configFile, cfg); err != nil {
			return err
		}
		for name, b := range in.RunFiles {
			if err := writeAtomic(d.file(name), b); err != nil {
				return err
			}
		}
		ref := in.Reference
		if ref == nil { // kl_coef 0 without one: the policy has not trained yet, so it is the initial model
			ref = in.Policy
		}
		if err := ref.Save(d.file(referenceDir), safetensors.F32); err != nil {
			return err
		}
		t0 := time.Now()
		err := r.saveCheckpoint(dir)
		r.lastCheckpoint = time.Since(t0) // the first step's line reports it
		return err
	})
	if err != nil {
		r.Free()
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	r.attach(lock)
	return r, nil
}

// Stored is a run directory opened, and locked, for resuming: its settings and where its checkpointed
// policy and its reference model are, so the caller can load both before Resume.
type Stored struct {
	Config       Config
	PolicyDir    string // the current checkpoint's weights
	ReferenceDir string
	Step         int // training steps done

	lock *checkpoint.Lock
	ck   *checkpoint.Checkpoint
	path string
	comm *dist.Comm
}

// OpenRun locks a run directory (failing at once, naming the owner's pid, when another process holds
// it), checks its current checkpoint and removes what killed writers left. A lost or damaged checkpoint
// is an error naming the file, never a fresh start.
func OpenRun(path string) (*Stored, error) { return OpenRunIn(path, nil) }

// OpenRunIn is OpenRun for every rank of a data-parallel run (c nil: this process alone). Rank 0 locks
// and cleans the directory; only then do the other ranks open its checkpoint, read-only (the run
// directory must be on a file system every rank sees). All fail if one does.
func OpenRunIn(path string, c *dist.Comm) (*Stored, error) {
	if c == nil {
		c = dist.Single()
	}
	var s *Stored
	var err error
	if c.Rank() == 0 {
		s, err = openRun(path)
	}
	// Two rounds: the others open only once rank 0 has cleaned; a failure of either round is every
	// rank's (agree returns it everywhere, so all take the same branch).
	if err = agree(c, "opening the run directory", err); err == nil {
		if c.Rank() != 0 {
			s, err = openFollower(path)
		}
		err = agree(c, "opening the run directory", err)
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		return nil, err
	}
	s.comm = c
	return s, nil
}

// openFollower opens a run directory that rank 0 has locked and cleaned.
func openFollower(path string) (*Stored, error) { return readStored(path) }

func openRun(path string) (*Stored, error) {
	lock, err := checkpoint.Acquire(path)
	if err != nil {
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	s, err := openLocked(path)
	if err != nil {
		lock.Release()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openLocked(path string) (*Stored, error) {
	s, err := readStored(path)
	if err != nil {
		return nil, err
	}
	if err := checkpoint.Clean(path); err != nil {
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	if _, err := os.Stat(filepath.Join(s.ReferenceDir, "model.safetensors")); err != nil {
		return nil, fmt.Errorf("selfplay: reference model: %w", err)
	}
	return s, nil
}

// readStored reads a run directory's configuration and finds its checkpoint; it changes nothing.
func readStored(path string) (*Stored, error) {
	b, err := os.ReadFile(filepath.Join(path, configFile))
	if err != nil {
		return nil, fmt.Errorf("selfplay: %s is not a run directory: %w", path, err)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("selfplay: %s: %w", filepath.Join(path, configFile), err)
	}
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	return &Stored{Config: cfg, PolicyDir: ck.ModelDir(), ReferenceDir: filepath.Join(path, referenceDir), Step: ck.Step, ck: ck, path: path}, nil
}

// Close gives the run directory up without resuming it.
func (s *Stored) Close() {
	if s.lock != nil {
		s.lock.Release()
	}
}

// Resume continues the run from its checkpoint: in.Policy must be loaded from PolicyDir and
// in.Reference from ReferenceDir (or left nil, as Inputs allows at kl_coef 0). Every record written
// after the checkpoint (metrics lines, data files, evaluations, iteration models) is removed first, so
// the redone work is recorded once. The runner takes over the lock.
//
// Every rank of a data-parallel run resumes with the same inputs (and s.comm as in.Comm); all fail if
// one does.
func (s *Stored) Resume(in Inputs) (*Runner, error) {
	if s.comm != nil && in.Comm == nil {
		in.Comm = s.comm
	}
	r, err := s.resume(in)
	if err = agree(in.comm(), "resuming the run", err); err != nil {
		if r != nil {
			r.Free()
		}
		return nil, err
	}
	return r, nil
}

func (s *Stored) resume(in Inputs) (*Runner, error) {
	if in.Policy != nil {
		src := in.Policy.SourceDir
		if ad := in.Policy.LoRA(); ad != nil {
			src = ad.SourceDir // a LoRA run: the base is the reference folder, the adapters the checkpoint's
		}
		if filepath.Clean(src) != filepath.Clean(s.PolicyDir) {
			return nil, fmt.Errorf("selfplay: the policy was loaded from %s, not from the checkpoint %s", src, s.PolicyDir)
		}
	}
	var st State
	if err := s.ck.ReadState(&st); err != nil {
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	if st.Steps != s.Step {
		return nil, fmt.Errorf("selfplay: %s holds step %d, its folder says %d", filepath.Join(s.ck.Dir, checkpoint.StateFile), st.Steps, s.Step)
	}
	r, err := newRunner(s.Config, in, st)
	if err != nil {
		return nil, err
	}
	if err := s.ck.ReadMoments(r.opt); err != nil {
		r.Free()
		return nil, fmt.Errorf("selfplay: %w", err)
	}
	if s.lock == nil { // a follower rank: rank 0 cuts the records back
		r.follow(s.path)
		return r, nil
	}
	dir := &runDir{path: s.lock.Dir()}
	if err := dir.cutBack(st); err != nil {
		r.Free()
		return nil, err
	}
	r.attach(s.lock)
	s.lock = nil
	return r, nil
}

// follow gives a rank other than 0 its view of the run directory: it writes nothing there.
func (r *Runner) follow(path string) {
	r.dir = &runDir{path: path, follower: true}
	r.in.Policy.SourceDir = r.dir.file(referenceDir)
}

// attach gives the runner its locked run directory. Saved models take their tokenizer files from the
// reference folder, which lives as long as the run (checkpoint folders come and go).
func (r *Runner) attach(lock *checkpoint.Lock) {
	r.dir = &runDir{path: lock.Dir(), lock: lock}
	r.in.Policy.SourceDir = r.dir.file(referenceDir)
}

// checkpoint makes the state after a training step durable: the records appended since the last
// checkpoint are synced, then the weights, moments and loop state are swapped in (checkpoint.Save).
func (r *Runner) checkpoint() error {
	if r.dir.follower {
		return nil
	}
	s, err := r.snapshot()
	if err != nil {
		return err
	}
	return r.checkpointSnapshot(s)
}

// checkpointSnapshot is checkpoint for the state s, taken when the weights and moments were as they are.
func (r *Runner) checkpointSnapshot(s *snapshot) error {
	if r.dir.follower {
		return nil
	}
	if r.dir.err != nil {
		return r.dir.err
	}
	if err := r.dir.syncRecords(); err != nil {
		return err
	}
	return r.saveSnapshot(r.dir.path, s)
}

// saveCheckpoint writes the checkpoint of the current step into dir.
func (r *Runner) saveCheckpoint(dir string) error {
	s, err := r.snapshot()
	if err != nil {
		return err
	}
	return r.saveSnapshot(dir, s)
}

// snapshot is the loop state now, with its generators.
func (r *Runner) snapshot() (*snapshot, error) {
	pcg, err := r.loopPCG.MarshalBinary()
	if err != nil {
		return nil, err
	}
	few, err := r.fewShot.MarshalBinary()
	if err != nil {
		return nil, err
	}
	r.state.LoopRNG, r.state.FewShotRNG = pcg, few
	b, err := json.Marshal(r.state)
	if err != nil {
		return nil, fmt.Errorf("selfplay: state of step %d: %w", r.state.Steps, err)
	}
	return &snapshot{step: r.state.Steps, state: b}, nil
}

// saveSnapshot writes the checkpoint of s, with the weights and moments as they are, into dir.
func (r *Runner) saveSnapshot(dir string, s *snapshot) error {
	if err := checkpoint.Save(dir, s.step, r.in.Policy, r.opt, s.state); err != nil {
		return fmt.Errorf("selfplay: %w", err)
	}
	return nil
}

// saveUnsaved checkpoints, after an interrupt, the last step that was not (checkpoint_every), when
// the weights and moments still hold it; every rank of a data-parallel run stops at the same point,
// so all of them agree on its outcome.
func (r *Runner) saveUnsaved() error {
	s := r.unsaved
	if s == nil {
		return nil
	}
	r.unsaved = nil
	err := r.checkpointSnapshot(s)
	if r.comm.Size() > 1 {
		if serr := r.settleLast(); serr != nil && err == nil {
			err = serr
		}
		err = agree(r.comm, fmt.Sprintf("checkpoint of step %d", s.step), err)
	}
	return err
}

// saveIteration keeps the model at an iteration boundary as a Hugging Face folder (iter<k>/), or a
// LoRA run's adapters as a PEFT folder over the run's reference (the base).
func (d *runDir) saveIteration(r *Runner, it int) error {
	if d.follower {
		return nil
	}
	dir := d.file(fmt.Sprintf("iter%d", it))
	if ad := r.in.Policy.LoRA(); ad != nil {
		if err := ad.Save(dir, "../"+referenceDir); err != nil { // relative: the run directory can move
			return err
		}
	} else if err := r.in.Policy.Save(dir, safetensors.F32); err != nil {
		return err
	}
	crashpoint.Here("selfplay.iteration")
	return nil
}
