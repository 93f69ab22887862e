package arith

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"iter"
)

// The built-in "limited data" (SeRL's seed set, scaled to this world) and a
// held-out evaluation set. Both are generated from fixed seeds and committed;
// a test regenerates them byte for byte.

//go:embed data/seed100.jsonl
var seedJSONL []byte

//go:embed data/eval500.jsonl
var evalJSONL []byte

const (
	seedPerLevel = 20
	evalPerLevel = 100
	// Seed streams: disjoint ranges of generator seeds, one per purpose.
	seedBase   = 1 << 40
	evalBase   = 2 << 40
	corpusBase = 3 << 40
)

// SeedSet is the fixed built-in seed set: 100 labelled problems, 20 per level.
func SeedSet() []Problem { return mustDecode(seedJSONL) }

// EvalSet is the held-out evaluation set: 500 problems, 100 per level,
// disjoint from the seed set by text and by structure.
func EvalSet() []Problem { return mustDecode(evalJSONL) }

func mustDecode(b []byte) []Problem {
	ps, err := ReadJSONL(bytes.NewReader(b))
	if err != nil {
		panic("arith: embedded data: " + err.Error())
	}
	return ps
}

// ReadJSONL reads problems, one JSON object per line.
func ReadJSONL(r io.Reader) ([]Problem, error) {
	var out []Problem
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var p Problem
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// WriteJSONL writes problems one per line, keys in SeRL's order.
func WriteJSONL(w io.Writer, ps []Problem) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, p := range ps {
		if err := enc.Encode(p); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Signature is a problem's parsed structure: sentence kinds, numbers, nouns
// and verbs, with people and agents replaced by their order of appearance.
// Two problems with equal signatures are one problem in different words or
// with different names.
func Signature(p Problem) string {
	ss, _, ok := parseProblem(p.Problem)
	if !ok {
		return "?" + p.Problem
	}
	roles := map[string]int{}
	role := func(o owner) int {
		if o.key == "" {
			return 0
		}
		if _, ok := roles[o.key]; !ok {
			roles[o.key] = len(roles) + 1
		}
		return roles[o.key]
	}
	var b bytes.Buffer
	for _, s := range ss {
		fmt.Fprintf(&b, "%d|%d|%d|%s|%s|%s|%s|%s|%d,%d,%d|%v|%v", s.kind, role(s.P), role(s.Q),
			s.O, s.C, s.G, s.U, s.V, s.N, s.K, s.M, s.F, s.X)
		for _, o := range s.L {
			fmt.Fprintf(&b, "|%d", role(o))
		}
		if s.ev != nil {
			b.WriteString("|" + s.ev.String())
		}
		b.WriteString(";")
	}
	return b.String()
}

// buildSet generates perLevel problems per level from a seed stream,
// skipping any whose text or structure is already taken.
func buildSet(name string, base uint64, perLevel int, taken map[string]bool) []Problem {
	var out []Problem
	for lvl := 1; lvl <= Levels; lvl++ {
		n := 0
		for s := base; n < perLevel; s++ {
			p := Generate(s, lvl)
			sig := Signature(p)
			if taken[p.Problem] || taken[sig] {
				continue
			}
			taken[p.Problem], taken[sig] = true, true
			p.ID = fmt.Sprintf("arith/%s/L%d/%02d", name, lvl, n)
			out = append(out, p)
			n++
		}
	}
	return out
}

// buildData regenerates both committed sets (the seed set first, so the
// evaluation set avoids it).
func buildData() (seed, eval []Problem) {
	taken := map[string]bool{}
	seed = buildSet("seed", seedBase, seedPerLevel, taken)
	eval = buildSet("eval", evalBase, evalPerLevel, taken)
	return seed, eval
}

// Corpus yields n labelled problems from a seed, levels cycling through the
// given list (all five if empty): training sets for the gt and maj
// baselines. Problems whose text is in the evaluation set are skipped (by text
// and by Signature), so a corpus never leaks evaluation problems.
func Corpus(seed, n int, levels []int) iter.Seq[Problem] {
	if len(levels) == 0 {
		levels = []int{1, 2, 3, 4, 5}
	}
	return func(yield func(Problem) bool) {
		held := map[string]bool{}
		for _, p := range EvalSet() {
			held[p.Problem], held[Signature(p)] = true, true
		}
		s := uint64(corpusBase) + uint64(seed)<<24
		for i := 0; i < n; s++ {
			p := Generate(s, levels[i%len(levels)])
			if held[p.Problem] || held[Signature(p)] {
				continue
			}
			if !yield(p) {
				return
			}
			i++
		}
	}
}

// WriteSample writes n problems (level 0: all levels in turn) for
// `serl task sample`: JSONL, or readable text with the solutions.
func WriteSample(w io.Writer, seed int64, n int, level int, asJSON bool) error {
	if level < 0 || level > Levels {
		return fmt.Errorf("arith: level %d out of range 0..%d", level, Levels)
	}
	var levels []int
	if level != 0 {
		levels = []int{level}
	}
	var ps []Problem
	for p := range Corpus(int(seed), n, levels) {
		ps = append(ps, p)
	}
	if asJSON {
		return WriteJSONL(w, ps)
	}
	bw := bufio.NewWriter(w)
	for i, p := range ps {
		if i > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "[%s] %s\n%s\n%s\n", p.Level, p.ID, p.Problem, p.Solution)
	}
	return bw.Flush()
}
