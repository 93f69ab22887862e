package tokenizer

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"iter"
	"sort"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// TrainOptions configures Train.
type TrainOptions struct {
	// SpecialTokens get ids 0.. in this order (as HF's BpeTrainer assigns them) and become special
	// added tokens.
	SpecialTokens []string
	// MinFrequency stops training when the best pair occurs fewer times (0: no limit).
	MinFrequency int
}

// Train learns a byte-level BPE tokenizer with Qwen2's configuration (NFC, Qwen2 split regex,
// ByteLevel) from corpus, one sequence per element (HF's train_from_files feeds lines with their
// endings). It reproduces HF's BpeTrainer: ids are special tokens, then the 256 byte symbols in
// code-point order, then merge results; each step merges the most frequent pair, ties going to the
// smallest (left id, right id). vocabSize counts all of these.
func Train(corpus iter.Seq[string], vocabSize int, opts TrainOptions) (*Tokenizer, error) {
	if vocabSize <= 0 {
		return nil, fmt.Errorf("tokenizer: train: vocab size %d", vocabSize)
	}
	sp, _ := splitterFor(patternQwen2)
	wordCount := map[string]int64{}
	for text := range corpus {
		if !utf8.ValidString(text) {
			text = string(appendLossy(nil, []byte(text)))
		}
		sp.split(norm.NFC.String(text), func(w string) { wordCount[w]++ })
	}

	// Vocabulary: special tokens, alphabet, then merges.
	var idToWord []string
	wordToID := map[string]int32{}
	add := func(s string) int32 {
		if id, ok := wordToID[s]; ok {
			return id
		}
		id := int32(len(idToWord))
		idToWord = append(idToWord, s)
		wordToID[s] = id
		return id
	}
	seen := map[string]bool{}
	for _, s := range opts.SpecialTokens {
		if s == "" || seen[s] {
			return nil, fmt.Errorf("tokenizer: train: special token %q empty or repeated", s)
		}
		seen[s] = true
		add(s)
	}
	alphabet := make([]rune, 256)
	for b := range alphabet {
		alphabet[b] = byteRune[b]
	}
	sort.Slice(alphabet, func(i, j int) bool { return alphabet[i] < alphabet[j] })
	var byteSym [256]int32
	for _, r := range alphabet {
		byteSym[runeByte[r]] = add(string(r))
	}

	// Words in a fixed order (sorted), so training does not depend on map iteration.
	keys := make([]string, 0, len(wordCount))
	for w := range wordCount {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	words := make([][]int32, len(keys))
	counts := make([]int64, len(keys))
	for i, w := range keys {
		syms := make([]int32, len(w))
		for j := 0; j < len(w); j++ {
			syms[j] = byteSym[w[j]]
		}
		words[i], counts[i] = syms, wordCount[w]
	}

	// Pair counts and where each pair occurs.
	pairCounts := map[uint64]int64{}
	where := map[uint64][]int32{}
	note := func(m map[uint64][]int32, p uint64, w int32) {
		if l := m[p]; len(l) == 0 || l[len(l)-1] != w {
			m[p] = append(l, w)
		}
	}
	for i, w := range words {
		for j := 0; j+1 < len(w); j++ {
			p := pairKey(w[j], w[j+1])
			pairCounts[p] += counts[i]
			note(where, p, int32(i))
		}
	}
	q := &mergeQueue{}
	pushAll := func() {
		// Sorted so the heap sees the same sequence every run (entries for the same pair can
		// coexist, each with its own word list).
		ps := make([]uint64, 0, len(where))
		for p := range where {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		for _, p := range ps {
			if c := pairCounts[p]; c > 0 {
				heap.Push(q, &mergeEntry{pair: p, count: c, pos: where[p]})
			}
			delete(where, p)
		}
	}
	pushAll()

	var merges [][2]string
	for len(idToWord) < vocabSize && q.Len() > 0 {
		top := heap.Pop(q).(*mergeEntry)
		if c := pairCounts[top.pair]; top.count != c {
			// Stale count: requeue with the current one (HF's lazy update).
			top.count = c
			heap.Push(q, top)
			continue
		}
		if top.count < 1 || top.count < int64(opts.MinFrequency) {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		newID := add(idToWord[a] + idToWord[b])
		merges = append(merges, [2]string{idToWord[a], idToWord[b]})
		for _, wi := range top.pos {
			words[wi] = mergeWordTrain(words[wi], a, b, newID, func(p uint64, delta int64) {
				pairCounts[p] += delta * counts[wi]
				if delta > 0 {
					note(where, p, wi)
				}
			})
		}
		pushAll()
	}

	return newTrained(idToWord, merges, opts.SpecialTokens)
}

// mergeWordTrain replaces each non-overlapping (a, b), left to right, by c and reports the pair
// count changes exactly as HF's Word::merge does (the merged pair itself is not decremented).
func mergeWordTrain(w []int32, a, b, c int32, change func(p uint64, delta int64)) []int32 {
	for i := 0; i < len(w); i++ {
		if w[i] != a || i+1 >= len(w) || w[i+1] != b {
			continue
		}
		if i > 0 {
			change(pairKey(w[i-1], a), -1)
			change(pairKey(w[i-1], c), 1)
		}
		w = append(w[:i+1], w[i+2:]...)
		w[i] = c
		if i < len(w)-1 {
			change(pairKey(b, w[i+1]), -1)
			change(pairKey(c, w[i+1]), 1)
		}
	}
	return w
}

type mergeEntry struct {
	pair  uint64
	count int64
	pos   []int32
}

// mergeQueue pops the highest count, then the smallest pair (HF's Merge ordering).
type mergeQueue []*mergeEntry

func (q mergeQueue) Len() int { return len(q) }
func (q mergeQueue) Less(i, j int) bool {
	if q[i].count != q[j].count {
		return q[i].count > q[j].count
	}
	return q[i].pair < q[j].pair
}
func (q mergeQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *mergeQueue) Push(x any)   { *q = append(*q, x.(*mergeEntry)) }
func (q *mergeQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// newTrained builds the Tokenizer by writing the tokenizer.json HF would and parsing it, so a
// trained tokenizer and a loaded one cannot differ.
func newTrained(idToWord []string, merges [][2]string, specials []string) (*Tokenizer, error) {
	vocab := make(map[string]int64, len(idToWord))
	for id, w := range idToWord {
		vocab[w] = int64(id)
	}
	added := make([]addedJSON, len(specials))
	for i, s := range specials {
		id, content := int64(i), s
		added[i] = addedJSON{ID: &id, Content: &content, Special: true}
	}
	doc := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     json.RawMessage(`{"type":"NFC"}`),
		"pre_tokenizer":  json.RawMessage(qwen2PreTokenizerJSON()),
		"post_processor": json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`),
		"decoder":        json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`),
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return Parse(data, "trained tokenizer")
}

func qwen2PreTokenizerJSON() string {
	pat, _ := json.Marshal(patternQwen2)
	return `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(pat) +
		`},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}`
}
