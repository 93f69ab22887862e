// Package checkpoint keeps a training run's resumable state in its run directory — the weights as a
// Hugging Face folder, both AdamW moments as safetensors and the caller's loop state as JSON — and the
// run directory's lock. `serl train` (engine/selfplay) and `serl pretrain` (engine/pretrain) both use
// it; docs/RUNDIR.md describes the layout and its guarantees.
//
// A checkpoint is a folder checkpoint-<step>; the symbolic link "checkpoint" names the current one.
// Save writes the new folder beside the old one under a temporary name, syncs every file and folder,
// renames it to checkpoint-<step>, and switches the link with a single rename: a kill at any moment
// leaves the link naming a complete checkpoint, old or new. Open never falls back to a fresh start: a
// missing link or a missing or damaged file is an error naming it.
package checkpoint

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/internal/atomicfile"
	"github.com/serl-go/serl/internal/crashpoint"
	"github.com/serl-go/serl/kernels"
)

// Names inside a run directory and inside a checkpoint folder.
const (
	Link         = "checkpoint"  // symbolic link to the current checkpoint-<step> folder
	folderPrefix = "checkpoint-" // checkpoint-<step>
	ModelDir     = "model"       // the weights, a Hugging Face folder (F32 safetensors, config, tokenizer)
	MomentM      = "adam_m.safetensors"
	MomentV      = "adam_v.safetensors"
	StateFile    = "state.json"    // the caller's loop state
	ManifestFile = "manifest.json" // written last: step, optimizer steps, every other file's size and CRC
)

// required are the files every checkpoint holds besides the manifest; a LoRA run's model folder holds
// its adapters in PEFT's format instead of the full weights (the frozen base is the run's own).
var (
	required     = []string{ModelDir + "/config.json", ModelDir + "/model.safetensors", MomentM, MomentV, StateFile}
	requiredLoRA = []string{ModelDir + "/" + model.AdapterConfigFile, ModelDir + "/" + model.AdapterWeightsFile, MomentM, MomentV, StateFile}
)

// SwapPoints are the crash points of Save in order (internal/crashpoint): a kill at any of them must
// leave a run that resumes from the previous checkpoint or from the new one.
var SwapPoints = []string{
	"checkpoint.begin",    // temporary folder made, empty
	"checkpoint.model",    // weights written
	"checkpoint.moments",  // both moments written
	"checkpoint.state",    // state.json written
	"checkpoint.complete", // manifest written, folder synced: complete but under its temporary name
	"checkpoint.renamed",  // renamed to checkpoint-<step>, the link still names the old one
	"checkpoint.linked",   // the new link made under a temporary name
	"checkpoint.switched", // the link renamed over the old: the new checkpoint is current
	"checkpoint.cleaned",  // the previous checkpoint removed
}

type manifest struct {
	Step     int       `json:"step"`
	OptSteps int       `json:"optimizer_steps"`
	Files    []fileSum `json:"files"`
}

type fileSum struct {
	Path   string `json:"path"` // slash-separated, relative to the checkpoint folder
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func folderName(step int) string { return folderPrefix + strconv.Itoa(step) }

var folderRE = regexp.MustCompile(`^checkpoint-([0-9]+)$`)

// Save writes the checkpoint of step (the weights of m — only its adapters when it has LoRA adapters —,
// the moments and step count of opt, and state as JSON) into runDir and makes it the current one. A kill at any moment leaves the previous
// checkpoint current or this one; a failure returns an error and leaves the previous one current.
func Save(runDir string, step int, m *model.Model, opt *train.Optimizer, state any) error {
	stateJSON, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint: state of step %d: %w", step, err)
	}
	name := folderName(step)
	if cur, err := os.Readlink(filepath.Join(runDir, Link)); err == nil && cur == name {
		return fmt.Errorf("checkpoint: %s is already the current checkpoint", filepath.Join(runDir, name))
	}
	final := filepath.Join(runDir, name)
	tmp := final + ".tmp-" + randomSuffix()
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("checkpoint: step %d: %w", step, err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.begin")
	if ad := m.LoRA(); ad != nil {
		// The base is named relative to the adapters' final place, so a run directory can move.
		base := m.SourceDir
		if rel, err := filepath.Rel(filepath.Join(final, ModelDir), base); err == nil {
			base = rel
		}
		if err := ad.Save(filepath.Join(tmp, ModelDir), base); err != nil {
			return fail(err)
		}
	} else if err := m.Save(filepath.Join(tmp, ModelDir), safetensors.F32); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.model")
	if err := opt.M.WriteSafetensors(filepath.Join(tmp, MomentM), safetensors.F32); err != nil {
		return fail(err)
	}
	if err := opt.V.WriteSafetensors(filepath.Join(tmp, MomentV), safetensors.F32); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.moments")
	if err := atomicfile.WriteFile(filepath.Join(tmp, StateFile), append(stateJSON, '\n')); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.state")
	man := manifest{Step: step, OptSteps: opt.Steps()}
	if man.Files, err = sumFiles(tmp); err != nil {
		return fail(err)
	}
	b, _ := json.MarshalIndent(man, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, ManifestFile), append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Join(tmp, ModelDir)); err != nil {
		return fail(err)
	}
	if err := syncDir(tmp); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.complete")
	// A folder of this step left by an earlier, killed process is not current (checked above): stale.
	if err := os.RemoveAll(final); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := syncDir(runDir); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.renamed")
	link := filepath.Join(runDir, Link+".tmp-"+randomSuffix())
	if err := os.Symlink(name, link); err != nil {
		return fail(err)
	}
	crashpoint.Here("checkpoint.linked")
	if err := os.Rename(link, filepath.Join(runDir, Link)); err != nil {
		os.Remove(link)
		return fail(err)
	}
	if err := syncDir(runDir); err != nil {
		return fmt.Errorf("checkpoint: step %d: %w", step, err)
	}
	crashpoint.Here("checkpoint.switched")
	if err := Clean(runDir); err != nil {
		return err
	}
	crashpoint.Here("checkpoint.cleaned")
	return nil
}

// Checkpoint is a complete checkpoint found by Open.
type Checkpoint struct {
	Dir      string // the checkpoint-<step> folder
	Step     int
	OptSteps int // optimizer steps taken, restored by ReadMoments
}

// ModelDir is the checkpoint's Hugging Face folder of weights.
func (c *Checkpoint) ModelDir() string { return filepath.Join(c.Dir, ModelDir) }

// Open finds runDir's current checkpoint and checks every file of it against its manifest. A missing
// link, folder or file, or one whose size or checksum differs, is an error naming it: a run never
// silently starts again from its first step.
func Open(runDir string) (*Checkpoint, error) {
	linkPath := filepath.Join(runDir, Link)
	target, err := os.Readlink(linkPath)
	if err != nil {
		var folders []string
		if entries, rerr := os.ReadDir(runDir); rerr == nil {
			for _, e := range entries {
				if folderRE.MatchString(e.Name()) {
					folders = append(folders, e.Name())
				}
			}
		}
		switch {
		case errors.Is(err, fs.ErrNotExist) && len(folders) > 0:
			return nil, fmt.Errorf("checkpoint: %s is missing: the run's current checkpoint is unknown (%s on disk); "+
				"restore the link (ln -s FOLDER %s) to resume from one of them", linkPath, strings.Join(folders, ", "), linkPath)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checkpoint: %s is missing: the run's checkpoint is lost (or %s is not a run directory)", linkPath, runDir)
		case errors.Is(err, syscall.EINVAL):
			return nil, fmt.Errorf("checkpoint: %s is not a link to a checkpoint-<step> folder (a run directory of an older serl?)", linkPath)
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	mt := folderRE.FindStringSubmatch(target)
	if mt == nil {
		return nil, fmt.Errorf("checkpoint: %s points to %q, not a checkpoint-<step> folder", linkPath, target)
	}
	step, _ := strconv.Atoi(mt[1])
	dir := filepath.Join(runDir, target)
	manPath := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(manPath)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var man manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", manPath, err)
	}
	if man.Step != step {
		return nil, fmt.Errorf("checkpoint: %s says step %d in folder %s", manPath, man.Step, target)
	}
	listed := map[string]bool{}
	for _, f := range man.Files {
		listed[f.Path] = true
	}
	need := required
	if listed[requiredLoRA[0]] {
		need = requiredLoRA
	}
	for _, r := range need {
		if !listed[r] {
			return nil, fmt.Errorf("checkpoint: %s does not list %s", manPath, r)
		}
	}
	for _, f := range man.Files {
		if err := checkFile(dir, f); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	return &Checkpoint{Dir: dir, Step: step, OptSteps: man.OptSteps}, nil
}

// ReadState decodes the checkpoint's state.json into v.
func (c *Checkpoint) ReadState(v any) error {
	path := filepath.Join(c.Dir, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	return nil
}

// ReadMoments loads both AdamW moments into opt and sets its step count.
func (c *Checkpoint) ReadMoments(opt *train.Optimizer) error {
	if err := readBlob(filepath.Join(c.Dir, MomentM), opt.M); err != nil {
		return err
	}
	if err := readBlob(filepath.Join(c.Dir, MomentV), opt.V); err != nil {
		return err
	}
	opt.SetSteps(c.OptSteps)
	return nil
}

// readBlob fills a blob from a safetensors file written by Blob.WriteSafetensors.
func readBlob(path string, b *model.Blob) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	var host []float32
	for i, s := range b.Layout.Specs {
		v := b.View(i)
		visible := v.Device().HostVisible() // a direct read panics where it is not
		var dst []float32
		if visible {
			dst = v.F32()
		} else {
			host = slices.Grow(host[:0], s.Len)[:s.Len]
			dst = host
		}
		if err := f.Float32(s.Name, dst); err != nil {
			return fmt.Errorf("checkpoint: %s: %w", path, err)
		}
		if !visible {
			if err := kernels.Upload(v, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

// tempRE matches what a killed writer leaves: checkpoint folders and links under temporary names, and
// the temporaries of model.Save and internal/atomicfile (name.tmp-*, name.old-*, .name.tmp-*).
var tempRE = regexp.MustCompile(`\.(tmp|old)-[0-9a-zA-Z]+$`)

// Clean removes from runDir every checkpoint folder but the current one and every temporary a killed
// writer left. Without a current checkpoint it removes temporaries only. The caller holds the lock.
func Clean(runDir string) error {
	cur, _ := os.Readlink(filepath.Join(runDir, Link))
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	removed := false
	for _, e := range entries {
		n := e.Name()
		stale := tempRE.MatchString(n) || cur != "" && folderRE.MatchString(n) && n != cur
		if !stale {
			continue
		}
		if err := os.RemoveAll(filepath.Join(runDir, n)); err != nil {
			return fmt.Errorf("checkpoint: removing %w", err)
		}
		removed = true
	}
	if removed {
		return syncDir(runDir)
	}
	return nil
}

func sumFiles(dir string) ([]fileSum, error) {
	var out []fileSum
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		size, sum, err := checksum(path)
		if err != nil {
			return err
		}
		out = append(out, fileSum{Path: filepath.ToSlash(rel), Size: size, CRC32C: sum})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

func checkFile(dir string, f fileSum) error {
	path := filepath.Join(dir, filepath.FromSlash(f.Path))
	size, sum, err := checksum(path)
	if err != nil {
		return err
	}
	if size != f.Size || sum != f.CRC32C {
		return fmt.Errorf("%s is damaged: %d bytes, CRC-32C %08x; the manifest says %d bytes, %08x", path, size, sum, f.Size, f.CRC32C)
	}
	return nil
}

func checksum(path string) (int64, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, h.Sum32(), nil
}

// syncDir makes a folder's entries (creations, renames) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
