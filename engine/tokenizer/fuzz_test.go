package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzEncode: no panic, the pieces tile the input, and decode(encode(s)) gives s back (NFC for
// Qwen2) for valid UTF-8 without added-token text (lstrip/rstrip and non-ASCII tokens are lossy).
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "hello world", "it's 12345", "a\r\n\r\nb", "  x", "\u3000\u0085x",
		"😀👩‍💻", "cafe\u0301", "<|im_end|>", "<mask> a", "[[sw]]", "'LL'ſ", "\xff\xfe", "١٢٣"} {
		f.Add(s)
	}
	toks := []*Tokenizer{loadFamily(f, "qwen2"), loadFamily(f, "llama3")}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tk := range toks {
			var b strings.Builder
			tk.split.split(s, func(p string) {
				if p == "" {
					t.Fatalf("empty piece in %q", s)
				}
				b.WriteString(p)
			})
			if b.String() != s {
				t.Fatalf("pieces do not tile %q", s)
			}
			for _, o := range []EncodeOptions{{}, {ParseSpecial: true, AddSpecial: true}} {
				ids := tk.Encode(s, o)
				got, err := tk.Decode(ids, true)
				if err != nil {
					t.Fatal(err)
				}
				if !utf8.ValidString(s) || lossyAdded(tk, s) {
					continue
				}
				want := s
				if tk.nfc {
					want = norm.NFC.String(s)
				}
				if o.ParseSpecial {
					// Special text was dropped by skipSpecial; compare against the text without it.
					for _, id := range tk.SpecialIDs() {
						want = strings.ReplaceAll(want, tk.tokens[id], "")
					}
					if strings.Contains(want, "<|") || strings.Contains(s, "<|") {
						continue // removing a token may create another one
					}
				}
				if got != want {
					t.Fatalf("round trip %q: got %q want %q", s, got, want)
				}
			}
		}
	})
}

// FuzzLoad: malformed tokenizer.json gives an error, never a panic; whatever loads can encode.
func FuzzLoad(f *testing.F) {
	for _, fam := range families {
		data, err := os.ReadFile(filepath.Join("testdata", fam, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	small, err := os.ReadFile(filepath.Join("testdata", "qwen2", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small[:len(small)/2])
	// A small valid file (ids < 120) so mutations are cheap enough to explore the schema.
	f.Add(mutate(f, func(m map[string]any) {
		model := m["model"].(map[string]any)
		vocab := model["vocab"].(map[string]any)
		for k, v := range vocab {
			if v.(float64) >= 120 {
				delete(vocab, k)
			}
		}
		var merges []any
		for _, mg := range model["merges"].([]any) {
			a, b, _ := strings.Cut(mg.(string), " ")
			if _, ok := vocab[a+b]; ok {
				merges = append(merges, mg)
			}
		}
		model["merges"] = merges
		m["added_tokens"] = []any{}
	}))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		ids := tk.Encode("hello <|im_end|> world 123", EncodeOptions{ParseSpecial: true, AddSpecial: true})
		if _, err := tk.Decode(ids, false); err != nil {
			t.Fatal(err)
		}
	})
}
