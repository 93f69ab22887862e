package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/serl-go/serl/internal/atomicfile"
)

// Config is what tokenizer_config.json carries besides the tokenizer itself. Empty token fields are
// written as null.
type Config struct {
	ChatTemplate   string
	BOSToken       string
	EOSToken       string
	PadToken       string
	ModelMaxLength int
}

// Save writes dir/tokenizer.json in HF's schema (key order, vocab by id, merges as pairs: what
// `tokenizers` itself writes) and dir/tokenizer_config.json for transformers. Each file is written
// to a temporary file and renamed, so a crash never leaves a torn file.
func (t *Tokenizer) Save(dir string, cfg Config) error {
	for _, s := range []string{cfg.BOSToken, cfg.EOSToken, cfg.PadToken} {
		if _, ok := t.addedID[s]; s != "" && !ok {
			if _, ok := t.vocab[s]; !ok {
				return fmt.Errorf("tokenizer: save: %q is not a token", s)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	tj, err := t.MarshalTokenizerJSON()
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "tokenizer.json"), tj); err != nil {
		return err
	}
	cj, err := t.marshalConfig(cfg)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "tokenizer_config.json"), cj)
}

// MarshalTokenizerJSON returns the tokenizer.json contents.
func (t *Tokenizer) MarshalTokenizerJSON() ([]byte, error) {
	var b bytes.Buffer
	str := func(s string) {
		enc, _ := marshalNoEscape(s)
		b.Write(enc)
	}
	b.WriteString(`{"version":"1.0","truncation":null,"padding":null,"added_tokens":[`)
	added := append([]addedToken(nil), t.added...)
	sort.SliceStable(added, func(i, j int) bool { return added[i].id < added[j].id })
	for i, a := range added {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"content":`, a.id)
		str(a.content)
		fmt.Fprintf(&b, `,"single_word":%t,"lstrip":%t,"rstrip":%t,"normalized":%t,"special":%t}`,
			a.singleWord, a.lstrip, a.rstrip, a.normalized, a.special)
	}
	b.WriteString(`],"normalizer":`)
	b.Write(t.comp.normalizer)
	b.WriteString(`,"pre_tokenizer":`)
	b.Write(t.comp.preTokenizer)
	b.WriteString(`,"post_processor":`)
	b.Write(t.comp.postProcessor)
	b.WriteString(`,"decoder":`)
	b.Write(t.comp.decoder)
	fmt.Fprintf(&b, `,"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":%t,"byte_fallback":false,"ignore_merges":%t,"vocab":{`, t.fuseUnk, t.ignoreMerges)
	first := true
	for id, tok := range t.tokens {
		if !t.present[id] {
			continue
		}
		if vid, ok := t.vocab[tok]; !ok || int(vid) != id {
			continue // an added token outside the model vocab
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		str(tok)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(id))
	}
	b.WriteString(`},"merges":[`)
	for i, m := range t.mergeList {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		str(m[0])
		b.WriteByte(',')
		str(m[1])
		b.WriteByte(']')
	}
	b.WriteString("]}}")
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("tokenizer: save: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<|im_end|>" stays readable, as HF writes it
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

type addedConfigJSON struct {
	Content    string `json:"content"`
	LStrip     bool   `json:"lstrip"`
	Normalized bool   `json:"normalized"`
	RStrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
	Special    bool   `json:"special"`
}

func (t *Tokenizer) marshalConfig(cfg Config) ([]byte, error) {
	orNull := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	dec := map[string]addedConfigJSON{}
	var extra []string
	for _, a := range t.added {
		dec[strconv.Itoa(int(a.id))] = addedConfigJSON{a.content, a.lstrip, a.normalized, a.rstrip, a.singleWord, a.special}
		if a.special && a.content != cfg.BOSToken && a.content != cfg.EOSToken && a.content != cfg.PadToken {
			extra = append(extra, a.content)
		}
	}
	// Sorted keys, as transformers writes them.
	doc := map[string]any{
		"add_bos_token":                false,
		"added_tokens_decoder":         dec,
		"additional_special_tokens":    extra,
		"bos_token":                    orNull(cfg.BOSToken),
		"chat_template":                orNull(cfg.ChatTemplate),
		"clean_up_tokenization_spaces": false,
		"eos_token":                    orNull(cfg.EOSToken),
		"model_max_length":             cfg.ModelMaxLength,
		"pad_token":                    orNull(cfg.PadToken),
		"split_special_tokens":         false,
		"tokenizer_class":              "PreTrainedTokenizerFast",
		"unk_token":                    nil,
	}
	if extra == nil {
		doc["additional_special_tokens"] = []string{}
	}
	raw, err := marshalNoEscape(doc)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func writeAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	return nil
}
