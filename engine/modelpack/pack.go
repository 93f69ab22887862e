// Package modelpack packs a Hugging Face model folder into one zstd-compressed tar archive and unpacks
// it again, safely: the form in which serl embeds its built-in model in the binary.
package modelpack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ModelFiles are the files of a Hugging Face model folder that a packed model carries (serl.json: the
// prompt format it was trained with); config.json, model.safetensors and tokenizer.json are required.
var ModelFiles = []string{"config.json", "generation_config.json", "model.safetensors", "serl.json", "tokenizer.json", "tokenizer_config.json"}

var requiredFiles = []string{"config.json", "model.safetensors", "tokenizer.json"}

// MaxUnpacked bounds what an archive may expand to, so a corrupt or hostile archive cannot fill a disk;
// Pack refuses a folder over it, whose archive could not be unpacked.
const MaxUnpacked = 1 << 30

// Pack writes the model folder dir as a zstd-compressed tar archive. The archive depends only on the
// files' names and bytes (sorted entries, zero times and owners, one encoder thread), so packing the same
// folder twice gives the same archive and the same SHA-256.
func Pack(dir string, w io.Writer) error {
	if n, err := Size(dir); err != nil {
		return err
	} else if n > MaxUnpacked {
		return fmt.Errorf("modelpack: pack: %s holds %d bytes, over the %d an archive may unpack to", dir, n, MaxUnpacked)
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	names := slices.Clone(ModelFiles)
	slices.Sort(names)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && !slices.Contains(requiredFiles, name) {
			continue
		}
		if err != nil {
			zw.Close()
			return fmt.Errorf("modelpack: pack: %w", err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)),
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			zw.Close()
			return err
		}
		if _, err := tw.Write(b); err != nil {
			zw.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

// Size is the bytes of the files of the model folder dir that Pack packs.
func Size(dir string) (int64, error) {
	var n int64
	for _, name := range ModelFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && !slices.Contains(requiredFiles, name) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("modelpack: %w", err)
		}
		n += fi.Size()
	}
	return n, nil
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// entry is one file of an archive, read whole.
type entry struct {
	name string
	data []byte
}

// readArchive decodes a packed model, refusing anything but plain files with simple names (no paths,
// links or duplicates), more than MaxUnpacked bytes, or an archive without the required files.
func readArchive(archive []byte) ([]entry, error) {
	zr, err := zstd.NewReader(bytes.NewReader(archive), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxUnpacked))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []entry
	total := int64(0)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg || !safeName.MatchString(hdr.Name) {
			return nil, fmt.Errorf("archive: entry %q is not a plain file with a simple name", hdr.Name)
		}
		if seen[hdr.Name] {
			return nil, fmt.Errorf("archive: %q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if total += hdr.Size; hdr.Size < 0 || total > MaxUnpacked {
			return nil, fmt.Errorf("archive: more than %d bytes unpacked", MaxUnpacked)
		}
		b := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, fmt.Errorf("archive: %s: %w", hdr.Name, err)
		}
		out = append(out, entry{hdr.Name, b})
	}
	for _, name := range requiredFiles {
		if !seen[name] {
			return nil, fmt.Errorf("archive: no %s", name)
		}
	}
	return out, nil
}

// Unpack writes a packed model into dir, which must not exist yet. The files go into a temporary sibling
// folder that is renamed into place once complete, so dir is never seen half-written.
func Unpack(archive []byte, dir string) error {
	entries, err := readArchive(archive)
	if err != nil {
		return fmt.Errorf("modelpack: unpack: %w", err)
	}
	return write(entries, dir)
}

// write puts entries into dir, which must not exist yet, through a temporary sibling renamed into place.
func write(entries []entry, dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("modelpack: unpack: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("modelpack: unpack: %w", err)
	}
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(tmp, e.name), e.data, 0o644); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("modelpack: unpack: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes 0700 folders
		os.RemoveAll(tmp)
		return fmt.Errorf("modelpack: unpack: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("modelpack: unpack: %w", err)
	}
	return nil
}

// verify checks that dir holds exactly the archive's bytes for every file the archive has.
func verify(entries []entry, dir string) error {
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.name))
		if err != nil {
			return err
		}
		if sha256.Sum256(b) != sha256.Sum256(e.data) {
			return fmt.Errorf("%s: differs from the packed model (changed on disk)", filepath.Join(dir, e.name))
		}
	}
	return nil
}

// Extract makes sure cache/model-<digest> holds the archive's files, and those of add that the archive
// lacks (a file an archive packed before it existed, such as serl.json), and returns that folder. A
// folder whose files differ (edited, truncated or missing one) is replaced; processes racing on a first
// run each unpack into their own temporary folder and the first rename wins.
func Extract(archive []byte, cache string, add map[string][]byte) (string, error) {
	sum := sha256.Sum256(archive)
	dir := filepath.Join(cache, "model-"+hex.EncodeToString(sum[:8]))
	entries, err := readArchive(archive)
	if err != nil {
		return "", fmt.Errorf("modelpack: %w", err)
	}
	names := slices.Sorted(maps.Keys(add))
	for _, name := range names {
		if !safeName.MatchString(name) {
			return "", fmt.Errorf("modelpack: added file %q is not a simple name", name)
		}
		if !slices.ContainsFunc(entries, func(e entry) bool { return e.name == name }) {
			entries = append(entries, entry{name, add[name]})
		}
	}
	if verify(entries, dir) == nil {
		return dir, nil
	}
	if _, err := os.Stat(dir); err == nil {
		stale := dir + ".stale-" + strconv.Itoa(os.Getpid())
		if err := os.Rename(dir, stale); err != nil {
			return "", fmt.Errorf("modelpack: replacing %s: %w", dir, err)
		}
		os.RemoveAll(stale)
	}
	if err := write(entries, dir); err != nil {
		if verify(entries, dir) == nil { // another process unpacked it first
			return dir, nil
		}
		return "", err
	}
	if err := verify(entries, dir); err != nil {
		return "", fmt.Errorf("modelpack: %w", err)
	}
	return dir, nil
}
