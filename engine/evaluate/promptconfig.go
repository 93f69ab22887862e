package evaluate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PromptFile is serl's own file in a model folder: the prompt format the model was trained with, so
// that every command prompts a trained model as it was trained (a chat-trained model given raw text
// answers badly) without being told again. serl writes it with every model it saves.
const PromptFile = "serl.json"

// Prompt modes (docs/SERL.md D1).
const (
	ModeRaw  = "raw"  // the problem text and a newline, as the official evaluation
	ModeChat = "chat" // the chat template with a system prompt asking for \boxed{}
)

// PromptConfig is the content of PromptFile.
type PromptConfig struct {
	Mode   string `json:"prompt_mode"`             // raw or chat
	System string `json:"system_prompt,omitempty"` // chat: the system message
}

// Marshal is the file's bytes.
func (p PromptConfig) Marshal() []byte {
	b, _ := json.MarshalIndent(p, "", "  ")
	return append(b, '\n')
}

// ReadPromptConfig reads a model folder's PromptFile; ok is false when the folder has none. A file
// that is there but unreadable or malformed is an error naming it.
func ReadPromptConfig(dir string) (p PromptConfig, ok bool, err error) {
	path := filepath.Join(dir, PromptFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("%s: %w", path, err)
	}
	if p.Mode != ModeRaw && p.Mode != ModeChat {
		return p, false, fmt.Errorf("%s: prompt_mode %q (want raw or chat)", path, p.Mode)
	}
	return p, true, nil
}
