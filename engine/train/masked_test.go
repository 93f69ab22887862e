package train

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/internal/testenv"
)

func gradsOf(t *testing.T, tr *Trainer) []float32 {
	t.Helper()
	g := testenv.Read[float32](t, tr.Grads.Data)
	require.Len(t, g, tr.Model.Layout.Total)
	return g
}

func newTestTrainer(t *testing.T, m *model.Model) *Trainer {
	sched, err := NewSchedule(1e-3, 10, 0, 0.1)
	require.NoError(t, err)
	tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 128, 4)
	require.NoError(t, err)
	t.Cleanup(tr.Free)
	return tr
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, float64(abs32(a[i]-b[i])))
	}
	return d
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestMaskedNLLWithoutMaskIsNLL(t *testing.T) {
	m := tinyModel(t, 5)
	defer m.Free()
	tr := newTestTrainer(t, m)
	lens := []int{30, 11, 7}
	ids := fixedBatch(9, m.Config.Vocab, lens)
	l1, n1, err := tr.AccumulateNLL(ids, lens, 0.5)
	require.NoError(t, err)
	g1 := gradsOf(t, tr)
	require.NoError(t, m.Device().Zero(tr.Grads.Data))
	// 0 and 1 both mean "every predicted token".
	l2, n2, err := tr.AccumulateMaskedNLL(ids, lens, []int{0, 1, 0}, 0.5)
	require.NoError(t, err)
	assert.Equal(t, n1, n2)
	assert.InDelta(t, l1, l2, 1e-9)
	assert.Less(t, maxAbsDiff(g1, gradsOf(t, tr)), 1e-7)
}

// A masked-out prefix carries no gradient: masking sequence A entirely gives the gradient of B alone,
// and the loss of a partly masked sequence is the mean NLL of its unmasked targets.
func TestMaskedNLLIgnoresPrompt(t *testing.T) {
	m := tinyModel(t, 6)
	defer m.Free()
	tr := newTestTrainer(t, m)
	a := fixedBatch(1, m.Config.Vocab, []int{20})
	b := fixedBatch(2, m.Config.Vocab, []int{15})
	both := append(append([]int32(nil), a...), b...)

	_, nb, err := tr.AccumulateNLL(b, []int{15}, 1)
	require.NoError(t, err)
	gb := gradsOf(t, tr)
	require.NoError(t, m.Device().Zero(tr.Grads.Data))
	_, n, err := tr.AccumulateMaskedNLL(both, []int{20, 15}, []int{20, 0}, 1)
	require.NoError(t, err)
	assert.Equal(t, nb, n)
	assert.Less(t, maxAbsDiff(gb, gradsOf(t, tr)), 1e-6)
	require.NoError(t, m.Device().Zero(tr.Grads.Data))

	// Partial mask: targets 12..19 of a, so log-probs at indices 11..18.
	loss, n, err := tr.AccumulateMaskedNLL(a, []int{20}, []int{12}, 1)
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	var want float64
	require.NoError(t, m.Score(tr.Acts, [][]int32{a}, func(_ int, logp []float32) error {
		for j := 12; j < 20; j++ {
			want -= float64(logp[j-1])
		}
		return nil
	}))
	assert.InDelta(t, want/8, loss, 1e-5)
	g := gradsOf(t, tr)
	var nonzero bool
	for _, v := range g {
		nonzero = nonzero || v != 0
	}
	assert.True(t, nonzero)

	_, _, err = tr.AccumulateMaskedNLL(a, []int{20}, []int{20}, 1)
	require.Error(t, err, "no targets")
	_, _, err = tr.AccumulateMaskedNLL(a, []int{20}, []int{1, 2}, 1)
	require.Error(t, err)
}

// A micro-batch whose shape is wrong is an error naming it, before anything runs: a sequence of no
// tokens or fewer, lengths that do not add up to the tokens, more tokens than the arena holds.
func TestNLLBatchShapeErrors(t *testing.T) {
	m := tinyModel(t, 2)
	defer m.Free()
	tr := newTestTrainer(t, m)
	ids := fixedBatch(5, m.Config.Vocab, []int{130})
	for _, c := range []struct {
		ids  []int32
		lens []int
		want string
	}{
		{ids[:6], []int{-3, 9}, "train: sequence 0 has -3 tokens"},
		{ids[:6], []int{6, 0}, "train: sequence 1 has 0 tokens"},
		{ids[:6], []int{2, 3}, "train: batch of 6 tokens in sequences of 5 (arena holds 128)"},
		{ids, []int{130}, "train: batch of 130 tokens in sequences of 130 (arena holds 128)"},
	} {
		_, _, err := tr.AccumulateNLL(c.ids, c.lens, 1)
		require.ErrorContains(t, err, c.want, "lengths %v", c.lens)
	}
}
