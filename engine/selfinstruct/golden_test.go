package selfinstruct

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata/python_golden.json holds what CPython (re, str methods) and
// rouge_score's tokenizer produce on random adversarial strings; see
// testdata/gen_golden.py.
type golden struct {
	Python string `json:"python"`
	Parse  []struct {
		In  string   `json:"in"`
		Out []string `json:"out"`
	} `json:"parse"`
	Clean []struct {
		In          string `json:"in"`
		Python      string `json:"python"`
		First       string `json:"first"`
		RulesPython string `json:"rules_python"`
		RulesFirst  string `json:"rules_first"`
	} `json:"clean"`
	Rouge []struct {
		A  string   `json:"a"`
		B  string   `json:"b"`
		TA []string `json:"ta"`
		F  float64  `json:"f"`
		FR float64  `json:"fr"`
	} `json:"rouge"`
}

func loadGolden(t *testing.T) golden {
	data, err := os.ReadFile("testdata/python_golden.json")
	require.NoError(t, err)
	var g golden
	require.NoError(t, json.Unmarshal(data, &g))
	require.NotEmpty(t, g.Parse)
	require.NotEmpty(t, g.Clean)
	require.NotEmpty(t, g.Rouge)
	return g
}

func TestGoldenParse(t *testing.T) {
	for _, c := range loadGolden(t).Parse {
		want := c.Out
		if len(want) == 0 {
			want = nil
		}
		assert.Equal(t, want, ExtractQuestions(c.In), "%q", c.In)
	}
}

func TestGoldenCleanAndRules(t *testing.T) {
	for _, c := range loadGolden(t).Clean {
		py, first := Clean(c.In, CapitalizePython), Clean(c.In, CapitalizeFirst)
		assert.Equal(t, c.Python, py, "python: %q", c.In)
		assert.Equal(t, c.First, first, "first: %q", c.In)
		assert.Equal(t, c.RulesPython, CheckRules(py).String(), "rules python: %q", py)
		assert.Equal(t, c.RulesFirst, CheckRules(first).String(), "rules first: %q", first)
	}
}

func TestGoldenRouge(t *testing.T) {
	for _, c := range loadGolden(t).Rouge {
		want := c.TA
		if len(want) == 0 {
			want = nil
		}
		assert.Equal(t, want, Tokenize(c.A), "%q", c.A)
		// Exact equality: the 0.7 threshold is compared to the last bit.
		assert.Equal(t, c.F, RougeL(c.A, c.B), "%q vs %q", c.A, c.B)
		assert.Equal(t, c.FR, RougeL(c.B, c.A), "%q vs %q", c.B, c.A)
	}
}
