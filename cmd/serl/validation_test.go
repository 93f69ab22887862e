package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/tokenizer"
)

// Bad values are refused by their flag before any work, and edge inputs give an answer, not a vague
// error or a silent default (issue 16, item 12).
func TestFlagAndInputEdges(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o644))
	gen := []string{"generate", "--device", "cpu", "--prompt", "Tom has 3 cups."}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string // in stderr, or stdout when code is 0
	}{
		{"top-p above 1", append(gen, "--top-p", "7"), 2, "--top-p 7"},
		{"top-p zero", append(gen, "--top-p", "0"), 2, "--top-p 0"},
		{"negative top-k", append(gen, "--top-k", "-1"), 2, "--top-k -1"},
		{"negative threads", append(gen, "--threads", "-2"), 2, "--threads -2"},
		{"negative self-instruct", []string{"eval", "--self-instruct", "-3"}, 2, "--self-instruct -3"},
		{"infinite lr", []string{"train", "--lr", "Inf"}, 2, "--lr +Inf: want a finite number"},
		{"NaN kl", []string{"train", "--kl", "NaN"}, 2, "--kl NaN: want a finite number"},
		{"no model folder", []string{"eval", "--device", "cpu", "--model", empty + ".d"}, 1, empty + ".d: no such model folder"},
		{"a file as the model", []string{"generate", "--device", "cpu", "--model", empty, "--prompt", "x"}, 1, empty + " is a file"},
		{"a folder with no config.json", []string{"info", "--model", filepath.Dir(empty)}, 1, "config.json does not exist: " + filepath.Dir(empty) + " is not a Hugging Face model folder"},
		{"flag as a value", []string{"train", "--resume", "--run", "runs/x"}, 2, "--resume needs a value of its own (--resume VALUE); it took the flag --run"},
		{"flag=v as a value", []string{"eval", "--model", "--limit=3"}, 2, "--model needs a value of its own"},
		{"dash value, not a flag", append(gen, "--system", "-be brief-", "--max-new-tokens", "1"), 0, ""},
		{"NaN temperature", append(gen, "--temperature", "NaN"), 2, "--temperature NaN"},
		{"unknown mode", []string{"train", "--mode", "foo"}, 2, `unknown --mode "foo"`},
		{"unknown prompt mode", []string{"train", "--prompt-mode", "xml"}, 2, `unknown --prompt-mode "xml"`},
		{"empty eval set", []string{"eval", "--device", "cpu", "--data", empty}, 1, empty + ": no problems"},
		{"empty seeds", []string{"train", "--device", "cpu", "--seeds", empty, "--run", filepath.Join(t.TempDir(), "r")}, 1, empty + ": no problems"},
		{"tokenize the empty text", []string{"tokenize", "--text", ""}, 0, "[]\n"},
		{"tokenize without input", []string{"tokenize"}, 2, "exactly one of --text or --decode"},
		{"grade bare fractions", []string{"grade", "--gold", `\frac12`, "--pred", `\frac12`}, 0, "1\n"},
		{"grade bare against decimal", []string{"grade", "--gold", `\frac12`, "--pred", "0.5"}, 0, "1\n"},
		{"grade a response", []string{"grade", "--gold", `\frac12`, "--pred", `so it is $\boxed{\frac{1}{2}}$`}, 0, "1\n"},
		{"grade a wrong bare answer", []string{"grade", "--gold", `\frac12`, "--pred", `\frac13`}, 0, "0\n"},
		{"the built-in model by its printed name", []string{"eval", "--device", "cpu", "--model", "builtin:arith", "--limit", "1",
			"--n", "0", "--max-new-tokens", "4"}, 0, "all           1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCLI(t, c.args...)
			require.Equal(t, c.code, code, "stdout %s\nstderr %s", out, errs)
			if c.code == 0 {
				require.Contains(t, out, c.want)
			} else {
				require.Contains(t, errs, c.want)
			}
		})
	}
}

// A weight that is NaN is refused at load, naming the tensor.
func TestNaNWeightsNamed(t *testing.T) {
	dir := tinyModelDir(t)
	p := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(p)
	require.NoError(t, err)
	var ts []safetensors.TensorData
	const victim = "model.layers.0.self_attn.q_proj.weight"
	for _, n := range f.Names() {
		info, _ := f.Tensor(n)
		b, err := f.Bytes(n)
		require.NoError(t, err)
		b = append([]byte(nil), b...)
		if n == victim {
			require.Equal(t, safetensors.F32, info.DType)
			binary.LittleEndian.PutUint32(b[4*3:], math.Float32bits(float32(math.NaN())))
		}
		ts = append(ts, safetensors.TensorData{Name: n, DType: info.DType, Shape: info.Shape, Data: b})
	}
	f.Close()
	require.NoError(t, safetensors.Write(p, ts, nil))
	code, _, errs := runCLI(t, "generate", "--device", "cpu", "--model", dir, "--prompt", "Ann", "--max-new-tokens", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "tensor "+victim+": element 3 is NaN")
}

// A model whose vocabulary is larger than its tokenizer's can sample an id with no text: it shows as a
// marker in the sample's text instead of emptying it.
func TestSampledIDOutsideTokenizer(t *testing.T) {
	dir := tinyModelDir(t) // the model's vocabulary: 300
	corpus := func(yield func(string) bool) {
		for i := range 50 {
			if !yield(fmt.Sprintf("Ann has %d pens.", i)) {
				return
			}
		}
	}
	tok, err := tokenizer.Train(corpus, 270, tokenizer.TrainOptions{SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}})
	require.NoError(t, err)
	require.NoError(t, tok.Save(dir, tokenizer.Config{ChatTemplate: chat.ChatMLTemplate, EOSToken: "<|im_end|>", PadToken: "<|endoftext|>"}))
	code, out, errs := runCLI(t, "generate", "--device", "cpu", "--model", dir, "--prompt", "Ann has", "--n", "8",
		"--max-new-tokens", "24", "--seed", "1", "--json")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, ": not a token]")
}
