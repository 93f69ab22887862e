package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// fileJSON is tokenizer.json's top level. Components stay raw so that each is checked by its own
// rule and re-emitted unchanged by Save.
type fileJSON struct {
	Version       string          `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []addedJSON     `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type addedJSON struct {
	ID         *int64  `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized bool    `json:"normalized"`
	Special    bool    `json:"special"`
}

type modelJSON struct {
	Type                    string           `json:"type"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
}

type typed struct {
	Type string `json:"type"`
}

// Load reads and checks a Hugging Face tokenizer.json.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return Parse(data, path)
}

// Parse checks tokenizer.json contents; name is used in error messages. Only what Qwen2 and
// Llama-3 files use is accepted; anything else is refused by component and type, since an
// approximation would give wrong ids silently.
func Parse(data []byte, name string) (*Tokenizer, error) {
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", name, field, fmt.Sprintf(format, args...))
	}
	var f fileJSON
	if err := strictUnmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !isNull(f.Truncation) {
		return nil, fail("truncation", "must be null (truncation is not supported)")
	}
	if !isNull(f.Padding) {
		return nil, fail("padding", "must be null (padding is not supported)")
	}
	t := &Tokenizer{name: name}
	t.cache.init()
	var err error
	if t.nfc, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, fail("normalizer", "%v", err)
	}
	if t.split, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, fail("pre_tokenizer", "%v", err)
	}
	if err = parseDecoder(f.Decoder); err != nil {
		return nil, fail("decoder", "%v", err)
	}
	if len(f.Model) == 0 || isNull(f.Model) {
		return nil, fail("model", "missing")
	}
	var m modelJSON
	if err := strictUnmarshal(f.Model, &m); err != nil {
		return nil, fail("model", "%v", err)
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, fail("model.merges", "%v", err)
	}
	if err := t.setModel(&m, merges); err != nil {
		return nil, fail("model", "%v", err)
	}
	if err := t.setAdded(f.AddedTokens); err != nil {
		return nil, fail("added_tokens", "%v", err)
	}
	if t.prefix, t.suffix, err = t.parsePostProcessor(f.PostProcessor); err != nil {
		return nil, fail("post_processor", "%v", err)
	}
	t.comp = components{
		normalizer:    compact(f.Normalizer),
		preTokenizer:  compact(f.PreTokenizer),
		postProcessor: compact(f.PostProcessor),
		decoder:       compact(f.Decoder),
	}
	return t, nil
}

// strictUnmarshal refuses unknown fields: a field serl does not know may change the ids.
func strictUnmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

func isNull(r json.RawMessage) bool {
	s := bytes.TrimSpace(r)
	return len(s) == 0 || string(s) == "null"
}

func compact(r json.RawMessage) json.RawMessage {
	if isNull(r) {
		return json.RawMessage("null")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, r); err != nil {
		return json.RawMessage("null")
	}
	return b.Bytes()
}

func componentType(r json.RawMessage) (string, error) {
	var t typed
	if err := json.Unmarshal(r, &t); err != nil {
		return "", err
	}
	if t.Type == "" {
		return "", fmt.Errorf("missing type")
	}
	return t.Type, nil
}

func unsupported(typ string) error { return fmt.Errorf("type %s is not supported", typ) }

// parseNormalizer accepts null, NFC, or a Sequence of NFCs; it reports whether NFC applies.
func parseNormalizer(r json.RawMessage) (bool, error) {
	if isNull(r) {
		return false, nil
	}
	typ, err := componentType(r)
	if err != nil {
		return false, err
	}
	switch typ {
	case "NFC":
		var v struct{ Type string }
		return true, strictUnmarshal(r, &v)
	case "Sequence":
		var v struct {
			Type        string
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := strictUnmarshal(r, &v); err != nil {
			return false, err
		}
		nfc := false
		for i, n := range v.Normalizers {
			ok, err := parseNormalizer(n)
			if err != nil {
				return false, fmt.Errorf("normalizers[%d]: %w", i, err)
			}
			nfc = nfc || ok
		}
		return nfc, nil
	}
	return false, unsupported(typ)
}

type byteLevelJSON struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	TrimOffsets    bool   `json:"trim_offsets"`
	UseRegex       bool   `json:"use_regex"`
}

// parsePreTokenizer accepts Sequence[Split(known regex, Isolated), ByteLevel(no prefix space,
// no regex)], the configuration of Qwen2 and Llama-3.
func parsePreTokenizer(r json.RawMessage) (splitter, error) {
	if isNull(r) {
		return splitter{}, fmt.Errorf("null is not supported (a byte-level pre-tokenizer is required)")
	}
	typ, err := componentType(r)
	if err != nil {
		return splitter{}, err
	}
	if typ != "Sequence" {
		if typ == "ByteLevel" {
			return splitter{}, fmt.Errorf("type ByteLevel alone (GPT-2 regex) is not supported; use Sequence[Split, ByteLevel]")
		}
		return splitter{}, unsupported(typ)
	}
	var seq struct {
		Type          string            `json:"type"`
		PreTokenizers []json.RawMessage `json:"pretokenizers"`
	}
	if err := strictUnmarshal(r, &seq); err != nil {
		return splitter{}, err
	}
	var sp splitter
	haveSplit, haveBL := false, false
	for i, p := range seq.PreTokenizers {
		typ, err := componentType(p)
		if err != nil {
			return splitter{}, fmt.Errorf("pretokenizers[%d]: %w", i, err)
		}
		switch {
		case typ == "Split" && !haveSplit && !haveBL:
			var s struct {
				Type    string `json:"type"`
				Pattern struct {
					Regex  *string `json:"Regex"`
					String *string `json:"String"`
				} `json:"pattern"`
				Behavior string `json:"behavior"`
				Invert   bool   `json:"invert"`
			}
			if err := strictUnmarshal(p, &s); err != nil {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (Split): %w", i, err)
			}
			if s.Pattern.Regex == nil {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (Split): only a Regex pattern is supported", i)
			}
			if s.Behavior != "Isolated" || s.Invert {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (Split): behavior %s invert %v is not supported (want Isolated, false)", i, s.Behavior, s.Invert)
			}
			var ok bool
			if sp, ok = splitterFor(*s.Pattern.Regex); !ok {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (Split): regex %q is not supported (only the Qwen2 and Llama-3 patterns)", i, *s.Pattern.Regex)
			}
			haveSplit = true
		case typ == "ByteLevel" && haveSplit && !haveBL:
			var b byteLevelJSON
			if err := strictUnmarshal(p, &b); err != nil {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (ByteLevel): %w", i, err)
			}
			if b.AddPrefixSpace || b.UseRegex {
				return splitter{}, fmt.Errorf("pretokenizers[%d] (ByteLevel): add_prefix_space and use_regex must be false", i)
			}
			haveBL = true
		case typ == "Split" || typ == "ByteLevel":
			return splitter{}, fmt.Errorf("pretokenizers[%d]: %s out of place (want Split then ByteLevel)", i, typ)
		default:
			return splitter{}, fmt.Errorf("pretokenizers[%d]: %w", i, unsupported(typ))
		}
	}
	if !haveSplit || !haveBL {
		return splitter{}, fmt.Errorf("Sequence must be [Split, ByteLevel]")
	}
	return sp, nil
}

func parseDecoder(r json.RawMessage) error {
	if isNull(r) {
		return fmt.Errorf("null is not supported (a ByteLevel decoder is required)")
	}
	typ, err := componentType(r)
	if err != nil {
		return err
	}
	if typ != "ByteLevel" {
		return unsupported(typ)
	}
	var b byteLevelJSON
	return strictUnmarshal(r, &b)
}

// parseMerges accepts both forms HF writes: "a b" strings and ["a","b"] pairs.
func parseMerges(r json.RawMessage) ([][2]string, error) {
	if isNull(r) {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(r, &raw); err != nil {
		return nil, err
	}
	out := make([][2]string, len(raw))
	for i, e := range raw {
		e = bytes.TrimSpace(e)
		if len(e) > 0 && e[0] == '"' {
			var s string
			if err := json.Unmarshal(e, &s); err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("[%d]: %q is not two tokens separated by one space", i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var p []string
		if err := json.Unmarshal(e, &p); err != nil || len(p) != 2 {
			return nil, fmt.Errorf("[%d]: want \"a b\" or [\"a\",\"b\"], got %.40s", i, e)
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

// maxID bounds ids so that a hostile file cannot make Parse allocate without limit.
const maxID = 1 << 26

func (t *Tokenizer) setModel(m *modelJSON, merges [][2]string) error {
	if m.Type != "BPE" {
		if m.Type == "" {
			return fmt.Errorf("missing type")
		}
		return unsupported(m.Type)
	}
	switch {
	case m.Dropout != nil:
		return fmt.Errorf("dropout must be null")
	case m.UnkToken != nil:
		return fmt.Errorf("unk_token must be null")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return fmt.Errorf("continuing_subword_prefix must be null or empty")
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return fmt.Errorf("end_of_word_suffix must be null or empty")
	case m.ByteFallback:
		return fmt.Errorf("byte_fallback must be false")
	case m.Vocab == nil:
		return fmt.Errorf("vocab: missing")
	}
	t.ignoreMerges = m.IgnoreMerges
	t.fuseUnk = m.FuseUnk
	n := 0
	for tok, id := range m.Vocab {
		if id < 0 || id >= maxID {
			return fmt.Errorf("vocab: id %d of %q out of range", id, tok)
		}
		n = max(n, int(id)+1)
	}
	t.tokens = make([]string, n)
	t.present = make([]bool, n)
	t.vocab = make(map[string]int32, len(m.Vocab))
	t.rawVocab = make(map[string]int32, len(m.Vocab))
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	// Sorted so that the duplicate-id error names the same pair every time.
	toks := make([]string, 0, len(m.Vocab))
	for tok := range m.Vocab {
		toks = append(toks, tok)
	}
	sort.Strings(toks)
	for _, tok := range toks {
		id := int32(m.Vocab[tok])
		if t.present[id] {
			return fmt.Errorf("vocab: duplicate id %d (%q and %q)", id, t.tokens[id], tok)
		}
		t.tokens[id], t.present[id] = tok, true
		t.vocab[tok] = id
		if raw, ok := byteLevelDecode(tok); ok {
			t.rawVocab[string(raw)] = id
			if len(raw) == 1 && []rune(tok)[0] == byteRune[raw[0]] {
				t.byteID[raw[0]] = id
			}
		}
	}
	t.merges = make(map[uint64]mergeRule, len(merges))
	t.mergeList = merges
	for rank, p := range merges {
		a, okA := t.vocab[p[0]]
		b, okB := t.vocab[p[1]]
		if !okA || !okB {
			missing := p[0]
			if okA {
				missing = p[1]
			}
			return fmt.Errorf("merges[%d]: %q is not in the vocab", rank, missing)
		}
		c, ok := t.vocab[p[0]+p[1]]
		if !ok {
			return fmt.Errorf("merges[%d]: result %q is not in the vocab", rank, p[0]+p[1])
		}
		// A repeated pair takes its last rank, as HF's map insertion does.
		t.merges[pairKey(a, b)] = mergeRule{rank: int32(rank), id: c}
	}
	return nil
}

func (t *Tokenizer) setAdded(added []addedJSON) error {
	for i, a := range added {
		switch {
		case a.ID == nil || a.Content == nil:
			return fmt.Errorf("[%d]: id and content are required", i)
		case *a.Content == "":
			return fmt.Errorf("[%d]: empty content", i)
		case *a.ID < 0 || *a.ID >= maxID:
			return fmt.Errorf("[%d]: id %d out of range", i, *a.ID)
		}
		id := int32(*a.ID)
		for int(id) >= len(t.tokens) {
			t.tokens = append(t.tokens, "")
			t.present = append(t.present, false)
		}
		if t.present[id] && t.tokens[id] != *a.Content {
			return fmt.Errorf("[%d]: id %d of %q is already %q", i, id, *a.Content, t.tokens[id])
		}
		if mid, ok := t.vocab[*a.Content]; ok && mid != id {
			return fmt.Errorf("[%d]: %q has id %d but the vocab gives it %d", i, *a.Content, id, mid)
		}
		for _, prev := range t.added {
			if prev.content == *a.Content {
				return fmt.Errorf("[%d]: %q is listed twice", i, *a.Content)
			}
		}
		t.tokens[id], t.present[id] = *a.Content, true
		tok := addedToken{
			id: id, content: *a.Content, singleWord: a.SingleWord, lstrip: a.LStrip, rstrip: a.RStrip,
			normalized: a.Normalized, special: a.Special,
		}
		t.added = append(t.added, tok)
	}
	t.buildAdded()
	return nil
}

// buildAdded derives the lookup structures from t.added.
func (t *Tokenizer) buildAdded() {
	t.special = make([]bool, len(t.tokens))
	t.addedID = make(map[string]int32, len(t.added))
	t.rawTok = make([][]byte, len(t.tokens))
	for id, tok := range t.tokens {
		if !t.present[id] {
			continue
		}
		if raw, ok := byteLevelDecode(tok); ok {
			t.rawTok[id] = raw
		} else {
			t.rawTok[id] = []byte(tok)
		}
	}
	var plain, normalized []addedToken
	for _, a := range t.added {
		t.addedID[a.content] = a.id
		if a.special {
			t.special[a.id] = true
		}
		if a.normalized {
			if t.nfc {
				a.content = norm.NFC.String(a.content)
			}
			normalized = append(normalized, a)
		} else {
			plain = append(plain, a)
		}
	}
	t.plainAdded = newMatcher(plain)
	t.normAdded = newMatcher(normalized)
}

type templateItem struct {
	SpecialToken *struct {
		ID     string `json:"id"`
		TypeID int    `json:"type_id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID     string `json:"id"`
		TypeID int    `json:"type_id"`
	} `json:"Sequence"`
}

// parsePostProcessor returns the ids a single sequence gets before and after it when special
// tokens are added.
func (t *Tokenizer) parsePostProcessor(r json.RawMessage) (prefix, suffix []int32, err error) {
	if isNull(r) {
		return nil, nil, nil
	}
	typ, err := componentType(r)
	if err != nil {
		return nil, nil, err
	}
	switch typ {
	case "ByteLevel":
		// Only trims offsets: no effect on ids.
		var b byteLevelJSON
		return nil, nil, strictUnmarshal(r, &b)
	case "Sequence":
		var v struct {
			Type       string            `json:"type"`
			Processors []json.RawMessage `json:"processors"`
		}
		if err := strictUnmarshal(r, &v); err != nil {
			return nil, nil, err
		}
		for i, p := range v.Processors {
			pre, suf, err := t.parsePostProcessor(p)
			if err != nil {
				return nil, nil, fmt.Errorf("processors[%d]: %w", i, err)
			}
			if (len(pre) > 0 || len(suf) > 0) && (len(prefix) > 0 || len(suffix) > 0) {
				return nil, nil, fmt.Errorf("processors[%d]: more than one processor adds tokens", i)
			}
			prefix, suffix = append(prefix, pre...), append(suffix, suf...)
		}
		return prefix, suffix, nil
	case "TemplateProcessing":
		var v struct {
			Type          string         `json:"type"`
			Single        []templateItem `json:"single"`
			Pair          []templateItem `json:"pair"`
			SpecialTokens map[string]struct {
				ID     string   `json:"id"`
				IDs    []int64  `json:"ids"`
				Tokens []string `json:"tokens"`
			} `json:"special_tokens"`
		}
		if err := strictUnmarshal(r, &v); err != nil {
			return nil, nil, err
		}
		seen := 0
		for i, it := range v.Single {
			switch {
			case it.Sequence != nil && it.SpecialToken == nil:
				if it.Sequence.ID != "A" {
					return nil, nil, fmt.Errorf("single[%d]: sequence %q in a single template", i, it.Sequence.ID)
				}
				seen++
			case it.SpecialToken != nil && it.Sequence == nil:
				st, ok := v.SpecialTokens[it.SpecialToken.ID]
				if !ok {
					return nil, nil, fmt.Errorf("single[%d]: %q is not in special_tokens", i, it.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if id < 0 || id >= int64(len(t.tokens)) || !t.present[id] {
						return nil, nil, fmt.Errorf("special_tokens[%q]: id %d is not a token", it.SpecialToken.ID, id)
					}
					if seen == 0 {
						prefix = append(prefix, int32(id))
					} else {
						suffix = append(suffix, int32(id))
					}
				}
			default:
				return nil, nil, fmt.Errorf("single[%d]: want one of SpecialToken or Sequence", i)
			}
		}
		if seen != 1 {
			return nil, nil, fmt.Errorf("single: want exactly one Sequence A, got %d", seen)
		}
		return prefix, suffix, nil
	}
	return nil, nil, unsupported(typ)
}
