package model

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
)

// ForwardAgain reruns the staged batch with nothing crossing to the device, and gives what Forward
// gives; without a staged batch it is an error.
func TestForwardAgain(t *testing.T) {
	d := testenv.CPU(t)
	m, err := Load(d, "testdata/qwen2_f32")
	require.NoError(t, err)
	defer m.Free()
	a, err := m.NewActivations(16, 2)
	require.NoError(t, err)
	defer a.Free()
	require.ErrorContains(t, m.ForwardAgain(a), "without a staged batch")

	ids := []int32{1, 5, 9, 2, 7, 3, 3, 8}
	require.NoError(t, m.Forward(a, ids, []int{5, 3}))
	want := make([]float32, len(ids))
	require.NoError(t, a.LogProbs(want))
	before := d.Transfers()
	require.NoError(t, m.ForwardAgain(a))
	require.Equal(t, kernels.Transfers{}, d.Transfers().Sub(before), "nothing crosses")
	got := make([]float32, len(ids))
	require.NoError(t, a.LogProbs(got))
	require.Equal(t, want, got)
}
