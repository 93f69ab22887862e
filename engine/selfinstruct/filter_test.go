package selfinstruct

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFilterWorkedExample(t *testing.T) {
	f := NewFilter(NewPool())
	f.Capitalization = CapitalizePython
	res := f.Process(workedCompletion)
	assert.Equal(t, []string{
		"If $f(x) = 3x^2 - 2x + 1$, what is the value of $f(-2)$?",
		"A bakery sells 250 loaves ... how many loaves in 7 days?",
		"Simplify $\\sqrt{48}$ ... where a and b are integers. let me know if you need more.",
	}, res.Accepted)
	var want Counts
	want[Accepted], want[Keyword], want[TooShort] = 3, 1, 1
	assert.Equal(t, want, res.Counts)
	assert.Equal(t, 2, res.Counts.Rejected())
	assert.Equal(t, "Accepted=3 TooShort=1 Keyword=1", res.Counts.String())
	assert.Equal(t, 3, f.Pool.Len(), "accepted problems join the pool")
	// The first accepted problem met an empty pool; later ones were scored.
	assert.Equal(t, -1, res.Candidates[0].Match)
	assert.Equal(t, 0, res.Candidates[1].Match)
}

func TestFilterRejectsAgainstSeedsAndSameRound(t *testing.T) {
	pool := NewPool()
	pool.Add("Find the sum of the roots of $x^2 - 5x + 6 = 0$.")
	pool.Add("How many positive divisors does 36 have?")
	f := NewFilter(pool)
	completion := "1. How many positive divisors does 36 have?\n" + // duplicate of seed 1
		"2. A train travels 60 miles in 1.5 hours. What is its speed?\n" +
		"3. A train travels 60 miles in 2 hours. What is its speed?\n" + // near copy of item 2
		"4. What is the largest prime factor of 221?"
	res := f.Process(completion)
	require.Len(t, res.Candidates, 4)
	assert.Equal(t, Similar, res.Candidates[0].Reason)
	assert.Equal(t, 1, res.Candidates[0].Match)
	assert.Equal(t, 1.0, res.Candidates[0].Score)
	assert.Equal(t, Accepted, res.Candidates[1].Reason)
	assert.Equal(t, Similar, res.Candidates[2].Reason, "pending includes problems accepted earlier in the round")
	assert.Equal(t, 2, res.Candidates[2].Match)
	assert.Greater(t, res.Candidates[2].Score, 0.7)
	assert.Equal(t, Accepted, res.Candidates[3].Reason)
	assert.LessOrEqual(t, res.Candidates[3].Score, 0.7)
	assert.Equal(t, []string{
		"A train travels 60 miles in 1.5 hours. What is its speed?",
		"What is the largest prime factor of 221?",
	}, res.Accepted)
	assert.Equal(t, 4, pool.Len())
	assert.Equal(t, 2, res.Counts[Similar])

	// Threshold is the caller's: at 1.0 nothing but an exact match is similar,
	// and F1 = 1 is not > 1.
	f2 := NewFilter(NewPool())
	f2.Threshold = 1
	res = f2.Process("1. What is two plus two, in total?\n2. What is two plus two, in total?")
	assert.Len(t, res.Accepted, 2)
}

func TestFilterEmptyCompletion(t *testing.T) {
	res := NewFilter(NewPool()).Process("")
	assert.Empty(t, res.Candidates)
	assert.Equal(t, Counts{}, res.Counts)
	res = NewFilter(NewPool()).Process("1. x y z w\n2. ")
	assert.Equal(t, 1, res.Counts[Empty])
	assert.Equal(t, 1, res.Counts[Accepted])
}

func TestCountsAdd(t *testing.T) {
	var a, b Counts
	a[Accepted], a[Similar] = 2, 1
	b[Similar], b[NonASCII] = 3, 1
	a.Add(b)
	assert.Equal(t, 2, a[Accepted])
	assert.Equal(t, 4, a[Similar])
	assert.Equal(t, 5, a.Rejected())
	assert.Equal(t, "Accepted=2 NonASCII=1 Similar=4", a.String())
}
