package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/internal/cachedir"
)

// extractEmbedded writes an embedded library image once to the user cache directory (or, where that
// cannot be written, the temporary directory: internal/cachedir), under a name made from its SHA-256,
// through a temporary file and a rename (so concurrent first runs never see a partial file), and
// verifies the bytes on disk before they are dlopened.
func extractEmbedded(name string, image []byte) (string, error) {
	return cachedir.Use(func(cache string) (string, error) { return extractTo(cache, name, image) })
}

func extractTo(cache, name string, image []byte) (string, error) {
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	dir := filepath.Join(cache, digest[:16])
	path := filepath.Join(dir, name)
	if verifyFile(path, sum) == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("loader: embedded %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("loader: embedded %s: %w", name, err)
	}
	_, werr := tmp.Write(image)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if werr != nil || serr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("loader: writing embedded %s to %s: %v", name, tmp.Name(), firstErr(werr, serr, cerr))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("loader: embedded %s: %w", name, err)
	}
	if err := verifyFile(path, sum); err != nil {
		return "", fmt.Errorf("loader: embedded %s: %w", name, err)
	}
	return path, nil
}

func verifyFile(path string, want [32]byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if got := sha256.Sum256(b); !bytes.Equal(got[:], want[:]) {
		return fmt.Errorf("%s: SHA-256 mismatch (file changed on disk)", path)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
