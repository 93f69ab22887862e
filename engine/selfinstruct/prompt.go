package selfinstruct

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// questionGenerationJSON is a copy of the official
// openrlhf/prompts/question_generation.json (docs/SERL.md §2.1), embedded because
// the prompt is needed at run time wherever the binary goes.
//
//go:embed question_generation.json
var questionGenerationJSON []byte

// Template is the few-shot generation prompt: a system message and the
// prefix of the user message that the numbered examples follow.
type Template struct {
	System string `json:"system"`
	User   string `json:"user"`
}

// DefaultTemplate returns the official prompt.
func DefaultTemplate() Template {
	t, err := ParseTemplate(questionGenerationJSON)
	if err != nil {
		panic("selfinstruct: embedded question_generation.json: " + err.Error())
	}
	return t
}

// ParseTemplate decodes a prompt file with "system" and "user" fields.
func ParseTemplate(data []byte) (Template, error) {
	var t Template
	if err := json.Unmarshal(data, &t); err != nil {
		return Template{}, fmt.Errorf("prompt template: %w", err)
	}
	if t.User == "" {
		return Template{}, errors.New(`prompt template: missing "user" field`)
	}
	return t, nil
}

// LoadTemplate reads a user-provided prompt file in the official format.
func LoadTemplate(path string) (Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Template{}, err
	}
	t, err := ParseTemplate(data)
	if err != nil {
		return Template{}, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Prompt is one few-shot generation prompt before chat-template rendering.
type Prompt struct {
	System   string
	User     string
	Examples []string // normalised examples, in prompt order
}

// NormalizeExample is re.sub(r"\s+", " ", ex).strip().rstrip(":"). Only
// colons are stripped at the end, so "a :" keeps its trailing space, as in
// the official code.
func NormalizeExample(ex string) string {
	return strings.TrimRight(collapseSpace(ex), ":")
}

// Render numbers already-normalised examples into the user message:
// prefix + "{i}. {ex}\n" for each + "{n+1}." with no trailing space.
func (t Template) Render(examples []string) Prompt {
	var b strings.Builder
	b.WriteString(t.User)
	for i, ex := range examples {
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteString(". ")
		b.WriteString(ex)
		b.WriteByte('\n')
	}
	b.WriteString(strconv.Itoa(len(examples) + 1))
	b.WriteByte('.')
	return Prompt{System: t.System, User: b.String(), Examples: examples}
}

// RNG is the few-shot sampler's random source: a PCG whose state is
// checkpointed with the rest of the self-play state (docs/SERL.md D14).
type RNG struct {
	pcg *rand.PCG
	r   *rand.Rand
}

// NewRNG returns a generator seeded deterministically from seed.
func NewRNG(seed uint64) *RNG {
	// The second PCG word is a fixed odd-looking constant so that a single
	// user seed selects the stream.
	pcg := rand.NewPCG(seed, 0x5e41_5e41_da7a_5eed)
	return &RNG{pcg: pcg, r: rand.New(pcg)}
}

// Rand exposes the generator for other draws that must share its state.
func (g *RNG) Rand() *rand.Rand { return g.r }

// MarshalBinary returns the generator state.
func (g *RNG) MarshalBinary() ([]byte, error) { return g.pcg.MarshalBinary() }

// UnmarshalBinary restores a state saved by MarshalBinary; the generator
// then continues exactly where the saved one was.
func (g *RNG) UnmarshalBinary(data []byte) error {
	if g.pcg == nil {
		g.pcg = rand.NewPCG(0, 0)
		g.r = rand.New(g.pcg)
	}
	return g.pcg.UnmarshalBinary(data)
}

// Default few-shot sizes (docs/SERL.md §2.2): 8 examples, at most 2 of them
// from the pool of generated problems that survived the difficulty filter.
const (
	DefaultShots    = 8
	DefaultFromKeep = 2
)

// ErrPromptTooLong is returned when not even one example fits the budget.
var ErrPromptTooLong = errors.New("selfinstruct: few-shot prompt does not fit even with one example")

// Builder assembles few-shot generation prompts.
type Builder struct {
	Template Template
	K        int // examples per prompt; 0 means DefaultShots
	FromKeep int // most examples drawn from keep; 0 means DefaultFromKeep, negative means none
}

// NewBuilder returns a Builder with the official prompt and defaults.
func NewBuilder() *Builder { return &Builder{Template: DefaultTemplate()} }

// Build draws m = min(FromKeep, len(keep)) examples from keep and K-m from
// seeds, each without replacement, shuffles them together, normalises them
// and renders the prompt. fits (nil: everything fits) is the caller's length
// check on the rendered prompt; while it fails, the last example is dropped
// and the rest renumbered, so the prompt's tail is never cut (docs/SERL.md D11).
func (b *Builder) Build(rng *RNG, seeds, keep []string, fits func(Prompt) bool) (Prompt, error) {
	k := b.K
	if k == 0 {
		k = DefaultShots
	}
	fromKeep := b.FromKeep
	if fromKeep == 0 {
		fromKeep = DefaultFromKeep
	}
	if k < 0 {
		return Prompt{}, fmt.Errorf("selfinstruct: K = %d", k)
	}
	m := min(max(fromKeep, 0), len(keep), k)
	if k-m > len(seeds) {
		return Prompt{}, fmt.Errorf("selfinstruct: need %d seed problems, have %d", k-m, len(seeds))
	}
	exs := make([]string, 0, k)
	for _, i := range sample(rng.r, len(keep), m) {
		exs = append(exs, keep[i])
	}
	for _, i := range sample(rng.r, len(seeds), k-m) {
		exs = append(exs, seeds[i])
	}
	rng.r.Shuffle(len(exs), func(i, j int) { exs[i], exs[j] = exs[j], exs[i] })
	for i, ex := range exs {
		exs[i] = NormalizeExample(ex)
	}
	for n := len(exs); n >= 1; n-- {
		p := b.Template.Render(exs[:n:n])
		if fits == nil || fits(p) {
			return p, nil
		}
	}
	return Prompt{}, ErrPromptTooLong
}

// sample returns k distinct indices drawn uniformly from [0, n), by a
// partial Fisher–Yates shuffle whose swaps live in a map, so the cost is
// O(k) however large the population (the keep pool only grows).
func sample(r *rand.Rand, n, k int) []int {
	out := make([]int, k)
	swaps := make(map[int]int, k)
	at := func(i int) int {
		if v, ok := swaps[i]; ok {
			return v
		}
		return i
	}
	for i := range k {
		j := i + r.IntN(n-i)
		out[i] = at(j)
		swaps[j] = at(i)
	}
	return out
}
