package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goldenCase is one render by Python jinja2 (testdata/gen_golden.py).
type goldenCase struct {
	Template            string          `json:"template"`
	Name                string          `json:"name"`
	Messages            []goldenMessage `json:"messages"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	BOSToken            string          `json:"bos_token"`
	EOSToken            string          `json:"eos_token"`
	DateString          string          `json:"date_string"`
	Extra               map[string]any  `json:"extra"`
	Output              *string         `json:"output"`
	Error               string          `json:"error"`
	PythonError         string          `json:"python_error"`
}

type goldenMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type goldenFile struct {
	FixedNow string       `json:"fixed_now"`
	Cases    []goldenCase `json:"cases"`
}

func loadGolden(t *testing.T) goldenFile {
	t.Helper()
	data, err := os.ReadFile("testdata/golden.json")
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var g goldenFile
	require.NoError(t, dec.Decode(&g))
	for i := range g.Cases {
		for k, v := range g.Cases[i].Extra {
			g.Cases[i].Extra[k] = pyNumbers(v)
		}
	}
	return g
}

// pyNumbers turns json.Numbers into int or float64 as Python's json.loads
// would, so that 1 stays an int.
func pyNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = pyNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = pyNumbers(x[k])
		}
	}
	return v
}

func goldenTemplates(t *testing.T) map[string]Template {
	t.Helper()
	out := map[string]Template{}
	for name, src := range map[string]string{
		"qwen2.5-instruct":  readFile(t, "testdata/qwen2.5-instruct.jinja"),
		"llama3.2-instruct": readFile(t, "testdata/llama3.2-instruct.jinja"),
		"features":          readFile(t, "testdata/features.jinja"),
		"chatml":            ChatMLTemplate,
	} {
		tpl, err := ParseNamed(name, src)
		require.NoError(t, err, name)
		out[name] = tpl
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func pinClock(t *testing.T, iso string) {
	t.Helper()
	fixed, err := time.ParseInLocation("2006-01-02T15:04:05", iso, time.Local)
	require.NoError(t, err)
	old := now
	now = func() time.Time { return fixed }
	t.Cleanup(func() { now = old })
}

func TestGolden(t *testing.T) {
	g := loadGolden(t)
	pinClock(t, g.FixedNow)
	templates := goldenTemplates(t)
	perTemplate := map[string]int{}
	for _, c := range g.Cases {
		perTemplate[c.Template]++
		t.Run(c.Name, func(t *testing.T) {
			tpl, ok := templates[c.Template]
			require.True(t, ok, "unknown template %q", c.Template)
			msgs := make([]Message, len(c.Messages))
			for i, m := range c.Messages {
				msgs[i] = Message{Role: m.Role, Content: m.Content}
			}
			got, err := tpl.Render(msgs, Options{
				AddGenerationPrompt: c.AddGenerationPrompt,
				BOSToken:            c.BOSToken,
				EOSToken:            c.EOSToken,
				DateString:          c.DateString,
				Extra:               c.Extra,
			})
			switch c.Error {
			case "":
				require.NoError(t, err)
				require.NotNil(t, c.Output)
				assert.Equal(t, *c.Output, got)
			case "raise_exception":
				var re *RaiseError
				require.True(t, errors.As(err, &re), "want a RaiseError, got %v (output %q)", err, got)
				assert.Equal(t, c.PythonError, re.Message)
				assert.Equal(t, c.Template, re.Template)
				assert.Contains(t, err.Error(), c.PythonError)
			default:
				require.Error(t, err, "jinja2 failed with %s: %s", c.Error, c.PythonError)
				assert.Contains(t, err.Error(), c.Template)
			}
		})
	}
	// Guards against a generator run that silently dropped a template.
	for _, name := range []string{"qwen2.5-instruct", "llama3.2-instruct", "chatml", "features"} {
		assert.GreaterOrEqual(t, perTemplate[name], 30, name)
	}
}

// The golden files must render the very template sources this package and
// its tests use.
func TestGoldenSourcesInSync(t *testing.T) {
	assert.Equal(t, readFile(t, "chatml.jinja"), ChatMLTemplate)
	for _, name := range []string{"qwen2.5-instruct.jinja", "llama3.2-instruct.jinja"} {
		shared := filepath.Join("..", "..", "..", "shared", "data", "templates", name)
		if b, err := os.ReadFile(shared); err == nil {
			assert.Equal(t, string(b), readFile(t, filepath.Join("testdata", name)), name)
		}
	}
}
