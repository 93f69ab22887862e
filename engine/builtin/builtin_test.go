package builtin

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shipped model: at most 20 MB packed, and a complete Hugging Face folder once unpacked.
func TestBuiltinModelLoads(t *testing.T) {
	assert.LessOrEqual(t, len(Archive), 20<<20, "packed model size")
	dir, err := Extract(t.TempDir())
	require.NoError(t, err)

	m, err := model.Load(testenv.CPU(t), dir)
	require.NoError(t, err)
	defer m.Free()
	assert.Equal(t, model.Qwen2, m.Config.Arch)

	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	require.NoError(t, err)
	assert.Equal(t, m.Config.Vocab, tok.VocabSize())
	cc, err := chat.LoadTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
	require.NoError(t, err)
	tmpl, err := cc.Template()
	require.NoError(t, err)
	s, err := tmpl.Render([]chat.Message{{Role: "user", Content: "Evaluate 2 + 3."}}, cc.Options(true))
	require.NoError(t, err)
	assert.Contains(t, s, "<|im_start|>user\nEvaluate 2 + 3.<|im_end|>")
	ids := tok.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true})
	back, err := tok.Decode(ids, false)
	require.NoError(t, err)
	assert.Equal(t, s, back)
}

// testdata/tokenizer_hf.jsonl is Hugging Face `tokenizers`' encoding of the world's text (every seed
// and held-out problem and solution, and the self-instruction prompt) with the built-in tokenizer:
//
//	node engine/tokenizer/testdata/gen_golden.mjs check DIR engine/task/arith/data/eval500.jsonl \
//	    engine/task/arith/data/seed100.jsonl engine/selfinstruct/question_generation.json
//
// with DIR holding the built-in model's tokenizer.json (regenerate when the model is rebuilt).
func TestBuiltinTokenizerMatchesHF(t *testing.T) {
	dir, err := Extract(t.TempDir())
	require.NoError(t, err)
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	require.NoError(t, err)
	f, err := os.Open(filepath.Join("testdata", "tokenizer_hf.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var row struct {
			Text string
			IDs  []int32 `json:"ids"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
		require.Equal(t, row.IDs, tok.Encode(row.Text, tokenizer.EncodeOptions{}), "%q", row.Text)
		n++
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 1200)
}
