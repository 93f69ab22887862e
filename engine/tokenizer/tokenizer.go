// Package tokenizer implements Hugging Face tokenizer.json byte-level BPE exactly as Qwen2/Qwen2.5
// and Llama-3.x use it (same ids as the `tokenizers` library), and a byte-level BPE trainer that
// reproduces HF's BpeTrainer and saves files HF loads.
//
// The pipeline is HF's: added tokens are split out of the raw text first (longest match, with
// lstrip/rstrip/single_word; normalized ones are matched after normalisation), each remaining piece
// is normalised (NFC where the file says so), split by the file's pre-tokenizer regex (a
// hand-written scanner per known pattern), mapped to GPT-2 byte symbols and merged by rank.
package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer is safe for concurrent use once loaded.
type Tokenizer struct {
	name string

	vocab     map[string]int32 // model vocab, byte-level form
	rawVocab  map[string]int32 // model vocab keyed by raw bytes (for ignore_merges)
	byteID    [256]int32       // id of each byte's symbol, -1 if the vocab lacks it
	merges    map[uint64]mergeRule
	mergeList [][2]string

	ignoreMerges bool
	fuseUnk      bool
	nfc          bool
	split        splitter

	tokens  []string // id → content (model token or added token)
	present []bool
	rawTok  [][]byte // id → bytes it decodes to
	special []bool

	added      []addedToken // in file order
	addedID    map[string]int32
	plainAdded *matcher // normalized=false: matched on the raw text
	normAdded  *matcher // normalized=true: matched on the normalised pieces

	prefix, suffix []int32 // post-processor ids around a single sequence

	comp  components
	cache wordCache
}

type components struct {
	normalizer, preTokenizer, postProcessor, decoder []byte
}

type mergeRule struct {
	rank int32
	id   int32
}

type addedToken struct {
	id                                              int32
	content                                         string
	singleWord, lstrip, rstrip, normalized, special bool
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// EncodeOptions selects how Encode treats special tokens.
type EncodeOptions struct {
	// AddSpecial applies the post-processor (Llama-3 prepends <|begin_of_text|>).
	AddSpecial bool
	// ParseSpecial recognises special-token text ("<|im_end|>") in the input as the special token.
	// False tokenises it as plain text, which is how model output fed back as a prompt must be
	// treated. Non-special added tokens are recognised either way (HF's encode_special_tokens).
	ParseSpecial bool
}

// VocabSize is one more than the largest id (the embedding rows a model needs).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenID returns the id of a token given in its vocabulary form (byte-level symbols for model
// tokens, the literal content for added tokens).
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	if id, ok := t.addedID[s]; ok {
		return id, true
	}
	id, ok := t.vocab[s]
	return id, ok
}

// Token returns the vocabulary form of id.
func (t *Tokenizer) Token(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.tokens) || !t.present[id] {
		return "", false
	}
	return t.tokens[id], true
}

// SpecialIDs lists the ids of the special added tokens, in file order.
func (t *Tokenizer) SpecialIDs() []int32 {
	var out []int32
	for _, a := range t.added {
		if a.special {
			out = append(out, a.id)
		}
	}
	return out
}

// Encode tokenises text. Invalid UTF-8 is first replaced by U+FFFD per maximal invalid subpart
// (HF only ever sees valid strings).
func (t *Tokenizer) Encode(text string, opt EncodeOptions) []int32 {
	if !utf8.ValidString(text) {
		text = string(appendLossy(nil, []byte(text)))
	}
	ids := make([]int32, 0, len(text)/3+len(t.prefix)+len(t.suffix)+1)
	if opt.AddSpecial {
		ids = append(ids, t.prefix...)
	}
	t.plainAdded.find(text, !opt.ParseSpecial, func(piece string, id int32) {
		if id >= 0 {
			ids = append(ids, id)
			return
		}
		if t.nfc && !isNFCQuick(piece) {
			piece = norm.NFC.String(piece)
		}
		t.normAdded.find(piece, !opt.ParseSpecial, func(sub string, id int32) {
			if id >= 0 {
				ids = append(ids, id)
				return
			}
			t.split.split(sub, func(word string) { ids = t.encodeWord(word, ids) })
		})
	})
	if opt.AddSpecial {
		ids = append(ids, t.suffix...)
	}
	return ids
}

// isNFCQuick avoids the normaliser's allocation for pure ASCII, the common case.
func isNFCQuick(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return norm.NFC.IsNormalString(s)
		}
	}
	return true
}

// encodeWord appends the BPE ids of one pre-token (raw bytes).
func (t *Tokenizer) encodeWord(w string, dst []int32) []int32 {
	if t.ignoreMerges {
		if id, ok := t.rawVocab[w]; ok {
			return append(dst, id)
		}
	}
	if len(w) == 1 {
		if id := t.byteID[w[0]]; id >= 0 {
			dst = append(dst, id)
		}
		return dst
	}
	cacheable := len(w) <= maxCachedWord
	if cacheable {
		if ids, ok := t.cache.get(w); ok {
			return append(dst, ids...)
		}
	}
	start := len(dst)
	dst = t.bpe(w, dst)
	if cacheable {
		t.cache.put(w, append([]int32(nil), dst[start:]...))
	}
	return dst
}

type symbol struct {
	id         int32
	prev, next int32
}

type candidate struct {
	rank, pos, id int32
}

type bpeScratch struct {
	syms []symbol
	heap []candidate
}

var scratchPool = sync.Pool{New: func() any { return new(bpeScratch) }}

// bpe merges the byte symbols of w as HF's Word::merge_all does: always the lowest-ranked pair,
// leftmost first, with a heap so that long words stay O(n log n). Bytes whose symbol is not in the
// vocab are dropped, as HF does when there is no unk_token.
func (t *Tokenizer) bpe(w string, dst []int32) []int32 {
	sc := scratchPool.Get().(*bpeScratch)
	defer scratchPool.Put(sc)
	syms := sc.syms[:0]
	for i := 0; i < len(w); i++ {
		if id := t.byteID[w[i]]; id >= 0 {
			syms = append(syms, symbol{id: id, prev: int32(len(syms)) - 1, next: int32(len(syms)) + 1})
		}
	}
	if len(syms) == 0 {
		sc.syms = syms
		return dst
	}
	syms[len(syms)-1].next = -1
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = heapPush(h, candidate{m.rank, int32(i), m.id})
		}
	}
	for len(h) > 0 {
		var top candidate
		top, h = heapPop(h)
		s := &syms[top.pos]
		if s.id < 0 || s.next < 0 {
			continue
		}
		right := syms[s.next]
		if m, ok := t.merges[pairKey(s.id, right.id)]; !ok || m.id != top.id {
			continue // stale: a neighbour merged since this candidate was pushed
		}
		syms[s.next].id = -1
		s.id = top.id
		s.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if s.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[s.prev].id, s.id)]; ok {
				h = heapPush(h, candidate{m.rank, s.prev, m.id})
			}
		}
		if s.next >= 0 {
			if m, ok := t.merges[pairKey(s.id, syms[s.next].id)]; ok {
				h = heapPush(h, candidate{m.rank, top.pos, m.id})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	sc.syms, sc.heap = syms, h
	return dst
}

func less(a, b candidate) bool { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos) }

func heapPush(h []candidate, c candidate) []candidate {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !less(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []candidate) (candidate, []candidate) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && less(h[l], h[m]) {
			m = l
		}
		if r < n && less(h[r], h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return top, h
}

// matcher finds added tokens: leftmost match, longest at that position, non-overlapping, as HF's
// Aho-Corasick (LeftmostLongest) does.
type matcher struct {
	first [256][]addedToken // by first byte, longest first
	any   bool
}

func newMatcher(toks []addedToken) *matcher {
	m := &matcher{}
	for _, a := range toks {
		b := a.content[0]
		m.first[b] = append(m.first[b], a)
		m.any = true
	}
	for b := range m.first {
		l := m.first[b]
		for i := 1; i < len(l); i++ { // insertion sort by length, descending; stable
			for j := i; j > 0 && len(l[j].content) > len(l[j-1].content); j-- {
				l[j], l[j-1] = l[j-1], l[j]
			}
		}
	}
	return m
}

// find calls emit for the pieces of s in order: an added token (id >= 0) or text between tokens
// (id -1). It follows HF's find_matches: a skipped special or a rejected single_word match still
// consumes its span; lstrip/rstrip swallow the neighbouring White_Space into the token.
func (m *matcher) find(s string, skipSpecial bool, emit func(piece string, id int32)) {
	if !m.any {
		if s != "" {
			emit(s, -1)
		}
		return
	}
	startOffset := 0
	for i := 0; i < len(s); {
		var hit *addedToken
		for k := range m.first[s[i]] {
			if strings.HasPrefix(s[i:], m.first[s[i]][k].content) {
				hit = &m.first[s[i]][k]
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		start, stop := i, i+len(hit.content)
		i = stop
		if skipSpecial && hit.special {
			continue
		}
		if hit.singleWord {
			if (start > 0 && endsWithWord(s[:start])) || (stop < len(s) && startsWithWord(s[stop:])) {
				continue
			}
		}
		if hit.lstrip {
			start = max(len(strings.TrimRightFunc(s[:start], isSpace)), startOffset)
		}
		if hit.rstrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], isSpace))
		}
		start = max(start, startOffset) // never re-emit text (only a token starting in stripped space could)
		if startOffset < start {
			emit(s[startOffset:start], -1)
		}
		emit(s[start:stop], hit.id)
		startOffset = stop
		i = max(i, stop)
	}
	if startOffset < len(s) {
		emit(s[startOffset:], -1)
	}
}

// wordCache memoises BPE results per pre-token. Shards keep lock contention low under concurrent
// Encode; a full shard is dropped wholesale, which bounds memory without LRU bookkeeping.
const (
	cacheShards   = 32
	cachePerShard = 4096
	maxCachedWord = 256
)

type wordCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int32
}

func (c *wordCache) init() {
	c.seed = maphash.MakeSeed()
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int32)
	}
}

func (c *wordCache) shard(w string) *cacheShard {
	return &c.shards[maphash.String(c.seed, w)%cacheShards]
}

func (c *wordCache) get(w string) ([]int32, bool) {
	s := c.shard(w)
	s.mu.RLock()
	ids, ok := s.m[w]
	s.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	s := c.shard(w)
	s.mu.Lock()
	if len(s.m) >= cachePerShard {
		s.m = make(map[string][]int32)
	}
	s.m[strings.Clone(w)] = ids
	s.mu.Unlock()
}
