package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Config is what rendering needs from a tokenizer_config.json.
type Config struct {
	// Path is the file the config was read from.
	Path string
	// ChatTemplate is the default chat template; empty if the tokenizer
	// has none.
	ChatTemplate string
	// NamedTemplates holds every template of the list form of
	// chat_template (e.g. "default", "tool_use", "rag"), by name.
	NamedTemplates map[string]string
	// Special tokens; empty when absent or null.
	BOSToken, EOSToken, PadToken string
}

// LoadTokenizerConfig reads a Hugging Face tokenizer_config.json.
// chat_template may be a string or a list of {name, template} objects (the
// "default" one is used); when the field is absent, a chat_template.jinja
// beside the file (where newer transformers saves it) is used instead.
// Token fields may be strings, null, or AddedToken objects {"content": ...}.
func LoadTokenizerConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	c := Config{Path: path}
	for field, dst := range map[string]*string{"bos_token": &c.BOSToken, "eos_token": &c.EOSToken, "pad_token": &c.PadToken} {
		if *dst, err = token(raw[field]); err != nil {
			return Config{}, fmt.Errorf("%s: field %s: %w", path, field, err)
		}
	}
	if tmpl, ok := raw["chat_template"]; ok && string(tmpl) != "null" {
		if c.ChatTemplate, c.NamedTemplates, err = chatTemplate(tmpl); err != nil {
			return Config{}, fmt.Errorf("%s: field chat_template: %w", path, err)
		}
		return c, nil
	}
	side := filepath.Join(filepath.Dir(path), "chat_template.jinja")
	switch src, err := os.ReadFile(side); {
	case err == nil:
		c.ChatTemplate = string(src)
	case !errors.Is(err, os.ErrNotExist):
		return Config{}, err
	}
	return c, nil
}

func token(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var added struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &added); err != nil || added.Content == nil {
		return "", errors.New(`want a string, null or an object with a string "content"`)
	}
	return *added.Content, nil
}

func chatTemplate(raw json.RawMessage) (string, map[string]string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil, nil
	}
	var list []struct {
		Name     *string `json:"name"`
		Template *string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", nil, errors.New("want a string or a list of {name, template} objects")
	}
	named := make(map[string]string, len(list))
	for i, e := range list {
		if e.Name == nil || e.Template == nil {
			return "", nil, fmt.Errorf("entry %d: want string fields name and template", i)
		}
		named[*e.Name] = *e.Template
	}
	def, ok := named["default"]
	if !ok {
		names := make([]string, 0, len(named))
		for n := range named {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", nil, fmt.Errorf("no template named \"default\" (have %q)", names)
	}
	return def, named, nil
}

// Template parses the default chat template, named after the config file.
func (c Config) Template() (Template, error) {
	if c.ChatTemplate == "" {
		return nil, fmt.Errorf("%s: no chat_template (and no chat_template.jinja beside it)", c.Path)
	}
	return ParseNamed(c.Path, c.ChatTemplate)
}

// Options returns rendering options carrying the config's BOS and EOS tokens.
func (c Config) Options(addGenerationPrompt bool) Options {
	return Options{AddGenerationPrompt: addGenerationPrompt, BOSToken: c.BOSToken, EOSToken: c.EOSToken}
}
