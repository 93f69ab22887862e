package selfinstruct

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const officialSystem = "Please act as a professional math teacher.\n" +
	"Your goal is to create high quality math word problems to help students learn math.\n" +
	"You only need to create the new question. Please DO NOT solve it."

func TestDefaultTemplate(t *testing.T) {
	tpl := DefaultTemplate()
	assert.Equal(t, officialSystem, tpl.System)
	assert.Equal(t, "Come up with a series of questions:\n", tpl.User)
}

func TestEmbeddedTemplateMatchesSharedData(t *testing.T) {
	path := filepath.Join(sharedData(t), "prompts", "question_generation.json")
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(questionGenerationJSON))
	tpl, err := LoadTemplate(path)
	require.NoError(t, err)
	assert.Equal(t, DefaultTemplate(), tpl)
}

func TestLoadTemplateErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"system": "s"}`), 0o644))
	_, err := LoadTemplate(bad)
	assert.ErrorContains(t, err, `missing "user"`)
	require.NoError(t, os.WriteFile(bad, []byte(`{`), 0o644))
	_, err = LoadTemplate(bad)
	assert.Error(t, err)
	_, err = LoadTemplate(filepath.Join(dir, "absent.json"))
	assert.Error(t, err)
}

func TestRenderK2(t *testing.T) {
	// docs/SERL.md §2.2, K = 2.
	p := DefaultTemplate().Render([]string{
		NormalizeExample("What is the value of $\\frac{14!}{5!9!}$?"),
		NormalizeExample("Simplify $(x+15)+(100x+15)$."),
	})
	assert.Equal(t, "Come up with a series of questions:\n"+
		"1. What is the value of $\\frac{14!}{5!9!}$?\n"+
		"2. Simplify $(x+15)+(100x+15)$.\n"+
		"3.", p.User)
	assert.Equal(t, officialSystem, p.System)
}

func TestNormalizeExample(t *testing.T) {
	assert.Equal(t, "Compute the following", NormalizeExample("  Compute\n\n the\tfollowing:: \n"))
	// strip() runs before rstrip(":"), so a space before the colon stays.
	assert.Equal(t, "a ", NormalizeExample("a :"))
	assert.Equal(t, "x: y", NormalizeExample("x:\u00a0y"))
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %03d", prefix, i)
	}
	return out
}

func TestBuildDraws(t *testing.T) {
	seeds := numbered("seed", 500)
	b := NewBuilder()
	rng := NewRNG(42)
	for _, nkeep := range []int{0, 1, 2, 3, 50} {
		keep := numbered("kept", nkeep)
		for range 50 {
			p, err := b.Build(rng, seeds, keep, nil)
			require.NoError(t, err)
			require.Len(t, p.Examples, DefaultShots)
			fromKeep, seen := 0, map[string]bool{}
			for _, ex := range p.Examples {
				assert.False(t, seen[ex], "drawn twice: %q", ex)
				seen[ex] = true
				if strings.HasPrefix(ex, "kept") {
					fromKeep++
				}
			}
			assert.Equal(t, min(2, nkeep), fromKeep)
			assert.Equal(t, DefaultTemplate().Render(p.Examples), p)
			assert.True(t, strings.HasSuffix(p.User, "\n9."))
		}
	}
}

func TestBuildShufflesKeepAmongSeeds(t *testing.T) {
	// With two kept problems among eight, each position should host a kept
	// problem sometimes; without the shuffle they would always lead.
	seeds := numbered("seed", 500)
	keep := numbered("kept", 10)
	b := NewBuilder()
	rng := NewRNG(7)
	var at [DefaultShots]int
	for range 400 {
		p, err := b.Build(rng, seeds, keep, nil)
		require.NoError(t, err)
		for i, ex := range p.Examples {
			if strings.HasPrefix(ex, "kept") {
				at[i]++
			}
		}
	}
	for i, n := range at {
		assert.Greater(t, n, 40, "position %d", i) // expected 100 each
	}
}

func TestBuildSamplesUniformly(t *testing.T) {
	// Every seed must be reachable, and the counts roughly equal.
	seeds := numbered("seed", 40)
	b := &Builder{Template: DefaultTemplate(), K: 8}
	rng := NewRNG(1)
	count := map[string]int{}
	for range 2000 {
		p, err := b.Build(rng, seeds, nil, nil)
		require.NoError(t, err)
		for _, ex := range p.Examples {
			count[ex]++
		}
	}
	require.Len(t, count, 40)
	for ex, n := range count {
		assert.InDelta(t, 400, n, 80, ex) // 2000·8/40 = 400, σ ≈ 18
	}
}

func TestBuildDeterministicAndResumable(t *testing.T) {
	seeds := numbered("seed", 500)
	keep := numbered("kept", 30)
	b := NewBuilder()
	run := func(rng *RNG, n int) []Prompt {
		var out []Prompt
		for range n {
			p, err := b.Build(rng, seeds, keep, nil)
			require.NoError(t, err)
			out = append(out, p)
		}
		return out
	}
	assert.Equal(t, run(NewRNG(42), 5), run(NewRNG(42), 5))
	assert.NotEqual(t, run(NewRNG(42), 5), run(NewRNG(43), 5))

	rng := NewRNG(42)
	run(rng, 3)
	state, err := rng.MarshalBinary()
	require.NoError(t, err)
	want := run(rng, 4)

	var restored RNG // zero value, as after decoding a checkpoint
	require.NoError(t, restored.UnmarshalBinary(state))
	assert.Equal(t, want, run(&restored, 4))

	other := NewRNG(99)
	require.NoError(t, other.UnmarshalBinary(state))
	assert.Equal(t, want, run(other, 4))

	assert.Error(t, other.UnmarshalBinary([]byte("garbage")))
}

func TestBuildOverflowDropsExamples(t *testing.T) {
	seeds := numbered("seed", 500)
	b := NewBuilder()
	var calls []int
	fits := func(p Prompt) bool {
		calls = append(calls, len(p.Examples))
		return len(p.User) <= 75
	}
	p, err := b.Build(NewRNG(5), seeds, nil, fits)
	require.NoError(t, err)
	// "Come up with a series of questions:\n" is 36 bytes; each example line
	// "i. seed 123\n" is 12; the tail "n." is 2: three examples make 74.
	assert.Equal(t, []int{8, 7, 6, 5, 4, 3}, calls)
	require.Len(t, p.Examples, 3)
	assert.True(t, strings.HasSuffix(p.User, "\n4."), "renumbered tail kept: %q", p.User)
	assert.Equal(t, DefaultTemplate().Render(p.Examples), p)

	// The kept examples are the first three of the full draw.
	full, err := b.Build(NewRNG(5), seeds, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, full.Examples[:3], p.Examples)

	_, err = b.Build(NewRNG(5), seeds, nil, func(Prompt) bool { return false })
	assert.ErrorIs(t, err, ErrPromptTooLong)
}

func TestBuildErrorsAndSizes(t *testing.T) {
	b := &Builder{Template: DefaultTemplate(), K: 4}
	_, err := b.Build(NewRNG(1), numbered("seed", 3), nil, nil)
	assert.ErrorContains(t, err, "need 4 seed problems")
	p, err := b.Build(NewRNG(1), numbered("seed", 2), numbered("kept", 5), nil)
	require.NoError(t, err) // 2 kept + 2 seeds
	assert.Len(t, p.Examples, 4)

	b = &Builder{Template: DefaultTemplate(), K: 3, FromKeep: -1}
	p, err = b.Build(NewRNG(1), numbered("seed", 3), numbered("kept", 5), nil)
	require.NoError(t, err)
	for _, ex := range p.Examples {
		assert.True(t, strings.HasPrefix(ex, "seed"))
	}
	_, err = (&Builder{Template: DefaultTemplate(), K: -1}).Build(NewRNG(1), nil, nil, nil)
	assert.Error(t, err)
}

func TestBuildWithRealSeeds(t *testing.T) {
	seeds := loadSeeds(t)
	require.Len(t, seeds, 500)
	p, err := NewBuilder().Build(NewRNG(42), seeds, nil, nil)
	require.NoError(t, err)
	require.Len(t, p.Examples, 8)
	for _, ex := range p.Examples {
		assert.NotContains(t, ex, "\n")
		assert.Equal(t, strings.TrimSpace(ex), ex)
	}
	assert.True(t, strings.HasPrefix(p.User, "Come up with a series of questions:\n1. "))
}
