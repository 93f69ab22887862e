package chat

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokenizer_config.json")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	return path
}

func TestLoadTokenizerConfigStringTemplateAndTokens(t *testing.T) {
	path := writeConfig(t, `{
		"bos_token": null,
		"eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "lstrip": false},
		"pad_token": "<|endoftext|>",
		"chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"
	}`)
	c, err := LoadTokenizerConfig(path)
	require.NoError(t, err)
	assert.Equal(t, Config{
		Path: path, EOSToken: "<|im_end|>", PadToken: "<|endoftext|>",
		ChatTemplate: "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}",
	}, c)
	tpl, err := c.Template()
	require.NoError(t, err)
	out, err := tpl.Render([]Message{{"user", "hi"}}, c.Options(true))
	require.NoError(t, err)
	assert.Equal(t, "hi<|im_end|>", out)
}

func TestLoadTokenizerConfigTemplateList(t *testing.T) {
	c, err := LoadTokenizerConfig(writeConfig(t, `{"bos_token": "<s>", "chat_template": [
		{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "D", c.ChatTemplate)
	assert.Equal(t, map[string]string{"tool_use": "T", "default": "D"}, c.NamedTemplates)
	assert.Equal(t, "<s>", c.BOSToken)
}

func TestLoadTokenizerConfigSideFileAndNone(t *testing.T) {
	path := writeConfig(t, `{"eos_token": "</s>"}`)
	c, err := LoadTokenizerConfig(path)
	require.NoError(t, err)
	assert.Empty(t, c.ChatTemplate)
	_, err = c.Template()
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)

	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(path), "chat_template.jinja"), []byte("X{{ eos_token }}"), 0o644))
	c, err = LoadTokenizerConfig(path)
	require.NoError(t, err)
	assert.Equal(t, "X{{ eos_token }}", c.ChatTemplate)
}

func TestLoadTokenizerConfigErrorsNameFileAndField(t *testing.T) {
	for body, field := range map[string]string{
		`{"chat_template": 5}`:                                  "field chat_template",
		`{"chat_template": [{"name": "rag", "template": "R"}]}`: "field chat_template: no template named \"default\"",
		`{"chat_template": [{"name": "default"}]}`:              "field chat_template: entry 0",
		`{"bos_token": 3}`:                                      "field bos_token",
		`{"eos_token": {"lstrip": true}}`:                       "field eos_token",
		`{"pad_token": ["x"]}`:                                  "field pad_token",
		`{"chat_template": "x"`:                                 "unexpected end of JSON input",
	} {
		path := writeConfig(t, body)
		_, err := LoadTokenizerConfig(path)
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), path+": ", body)
		assert.Contains(t, err.Error(), field, body)
	}
	_, err := LoadTokenizerConfig(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
