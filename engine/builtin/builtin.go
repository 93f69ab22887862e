// Package builtin holds serl's built-in model — a small Qwen2 trained by `serl pretrain` on the world
// of engine/task/arith — packed as a zstd-compressed tar of its Hugging Face folder and embedded in
// every binary, so SeRL runs with no download and no file beside the binary.
package builtin

import (
	_ "embed"
	"sync"

	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/modelpack"
	"github.com/serl-go/serl/internal/cachedir"
)

// Archive is the packed built-in model (Pack of `serl pretrain`'s model folder; README: how to rebuild).
//
//go:embed model.tar.zst
var Archive []byte

// Name names the built-in model in logs and run configurations.
const Name = "builtin:arith"

// ModelDir returns a folder holding the built-in model, unpacking it on first use into the user cache
// directory ($XDG_CACHE_HOME/serl, or the temporary directory where that cannot be written:
// internal/cachedir) under the archive's SHA-256. The folder's files are checked against the archive
// on every first call of a process.
var ModelDir = sync.OnceValues(func() (string, error) {
	return cachedir.Use(Extract)
})

// Extract unpacks the built-in model into cache (modelpack.Extract) and returns its folder. The folder
// gains the serl.json the archive predates, saying the model is prompted in chat form (SelfPlayConfig's),
// so that a command pointed at the folder itself prompts it as it was trained.
func Extract(cache string) (string, error) {
	c := SelfPlayConfig()
	pc := evaluate.PromptConfig{Mode: string(c.PromptMode), System: c.SystemPrompt}
	return modelpack.Extract(Archive, cache, map[string][]byte{evaluate.PromptFile: pc.Marshal()})
}
