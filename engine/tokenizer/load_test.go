package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// mutate loads the Qwen2 fixture as a generic JSON tree, applies f and returns the bytes.
func mutate(t testing.TB, f func(m map[string]any)) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", "qwen2", "tokenizer.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	f(m)
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

func TestLoadRefusals(t *testing.T) {
	model := func(m map[string]any) map[string]any { return m["model"].(map[string]any) }
	cases := []struct {
		name string
		f    func(m map[string]any)
		want string
	}{
		{"metaspace", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, "tokenizer.json: pre_tokenizer: type Metaspace is not supported"},
		{"unknown regex", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"Regex": `\s+`}
		}, `regex "\\s+" is not supported`},
		{"string pattern", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"String": " "}
		}, "only a Regex pattern"},
		{"lone bytelevel", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
		}, "ByteLevel alone"},
		{"nfkc", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "NFKC"} }, "normalizer: type NFKC is not supported"},
		{"nfd in sequence", func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "NFD"}}}
		}, "normalizers[1]: type NFD is not supported"},
		{"wordpiece", func(m map[string]any) { model(m)["type"] = "WordPiece" }, "model: type WordPiece is not supported"},
		{"byte fallback", func(m map[string]any) { model(m)["byte_fallback"] = true }, "byte_fallback must be false"},
		{"unk", func(m map[string]any) { model(m)["unk_token"] = "<unk>" }, "unk_token must be null"},
		{"unknown model field", func(m map[string]any) { model(m)["surprise"] = 1 }, `unknown field "surprise"`},
		{"merge part missing", func(m map[string]any) { model(m)["merges"] = []any{"zzzzz q"} }, `merges[0]: "zzzzz" is not in the vocab`},
		{"merge result missing", func(m map[string]any) { model(m)["merges"] = []any{[]any{"ÿ", "ÿ"}} }, `result "ÿÿ" is not in the vocab`},
		{"bad merge form", func(m map[string]any) { model(m)["merges"] = []any{"a b c"} }, "not two tokens"},
		{"bad merge pair", func(m map[string]any) { model(m)["merges"] = []any{[]any{"a"}} }, `want "a b"`},
		{"duplicate id", func(m map[string]any) { model(m)["vocab"].(map[string]any)["zzz"] = 5 }, "duplicate id 5"},
		{"negative id", func(m map[string]any) { model(m)["vocab"].(map[string]any)["zzz"] = -1 }, "out of range"},
		{"huge id", func(m map[string]any) { model(m)["vocab"].(map[string]any)["zzz"] = 1 << 40 }, "out of range"},
		{"added id clash", func(m map[string]any) { m["added_tokens"].([]any)[0].(map[string]any)["id"] = 3 }, "is already"},
		{"added empty", func(m map[string]any) { m["added_tokens"].([]any)[0].(map[string]any)["content"] = "" }, "empty content"},
		{"truncation", func(m map[string]any) { m["truncation"] = map[string]any{"max_length": 5} }, "truncation"},
		{"decoder", func(m map[string]any) { m["decoder"] = map[string]any{"type": "Metaspace"} }, "decoder: type Metaspace is not supported"},
		{"post processor", func(m map[string]any) { m["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, "post_processor: type RobertaProcessing is not supported"},
		{"template without A", func(m map[string]any) {
			m["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{}, "pair": []any{}, "special_tokens": map[string]any{}}
		}, "exactly one Sequence A"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(mutate(t, c.f), "tokenizer.json")
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.True(t, strings.HasPrefix(err.Error(), "tokenizer.json: "), err.Error())
		})
	}
	for _, bad := range []string{"", "{", "[]", "null", `{"model":null}`, `{"model":{"type":"BPE","vocab":{"a":0}}} x`} {
		_, err := Parse([]byte(bad), "x.json")
		require.Error(t, err, "%q", bad)
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	require.Error(t, err)
}

func TestAPI(t *testing.T) {
	tk := loadFamily(t, "llama3")
	bos, ok := tk.TokenID("<|begin_of_text|>")
	require.True(t, ok)
	require.Equal(t, []int32{bos}, tk.Encode("", EncodeOptions{AddSpecial: true}))
	require.Empty(t, tk.Encode("", EncodeOptions{}))
	s, ok := tk.Token(bos)
	require.True(t, ok)
	require.Equal(t, "<|begin_of_text|>", s)
	_, ok = tk.Token(int32(tk.VocabSize()))
	require.False(t, ok)
	require.Len(t, tk.SpecialIDs(), 6)
	require.Equal(t, 2161, tk.VocabSize())

	_, err := tk.Decode([]int32{1, int32(tk.VocabSize())}, false)
	require.ErrorContains(t, err, "ids[1]")
	_, err = tk.Decode([]int32{-1}, false)
	require.Error(t, err)
	_, err = tk.NewStreamDecoder(false).Push(99999)
	require.Error(t, err)

	// Special tokens in user text: parsed or plain, and skipSpecial drops them on decode.
	eot, _ := tk.TokenID("<|eot_id|>")
	ids := tk.Encode("hi<|eot_id|>", EncodeOptions{ParseSpecial: true})
	require.Equal(t, eot, ids[len(ids)-1])
	require.NotContains(t, tk.Encode("hi<|eot_id|>", EncodeOptions{}), eot)
	out, err := tk.Decode(ids, true)
	require.NoError(t, err)
	require.Equal(t, "hi", out)

	// Invalid UTF-8 is encoded as its U+FFFD replacement, like a lossy conversion.
	require.Equal(t, tk.Encode("a\uFFFDb", EncodeOptions{}), tk.Encode("a\xe2\x82b", EncodeOptions{}))
}

func TestLossyUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"\xe2\x82":         "\uFFFD",
		"\xe2\x82a":        "\uFFFDa",
		"\xf0\x9f\x98":     "\uFFFD",
		"\xf0\x9f\x98\x80": "😀",
		"\xc0\xaf":         "\uFFFD\uFFFD",
		"\xed\xa0\x80":     "\uFFFD\uFFFD\uFFFD", // surrogate: E0..9F is not a valid second byte after ED
		"\xff\xfe":         "\uFFFD\uFFFD",
		"\x80\x80x":        "\uFFFD\uFFFDx",
		"\xf4\x90\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD",
	} {
		require.Equal(t, want, string(appendLossy(nil, []byte(in))), "%q", in)
	}
	require.Equal(t, 3, incompleteTail([]byte("a\xf0\x9f\x98")))
	require.Equal(t, 0, incompleteTail([]byte("a\xf0\x9f\x98\x80")))
	require.Equal(t, 1, incompleteTail([]byte("\xe2")))
	require.Equal(t, 0, incompleteTail([]byte("\xed\xa0"))) // can never complete
}

func TestConcurrentEncode(t *testing.T) {
	tk := loadFamily(t, "qwen2")
	cases := readJSONL[goldenCase](t, filepath.Join("testdata", "qwen2", "golden.jsonl"))
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cases {
				c := cases[(i*7+g*31)%len(cases)]
				if !equalIDs(tk.Encode(c.Text, EncodeOptions{ParseSpecial: true}), c.IDs) {
					errs <- c.Text
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent encode differs for %q", e)
	}
}
