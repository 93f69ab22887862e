package model

import (
	"math"
	"strings"
	"testing"

	"github.com/serl-go/serl/internal/testenv"
	"github.com/stretchr/testify/require"
)

func TestRandomInit(t *testing.T) {
	d := testDevice(t)
	c, err := ParseConfig([]byte(`{"model_type":"qwen2","hidden_size":64,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":300}`), "init")
	require.NoError(t, err)
	newInit := func(seed uint64) *Model {
		m, err := New(d, c)
		require.NoError(t, err)
		require.NoError(t, RandomInit(m, seed, 0.02))
		return m
	}
	a, b, other := newInit(7), newInit(7), newInit(8)
	defer a.Free()
	defer b.Free()
	defer other.Free()
	pa := testenv.Read[float32](t, a.Params.Data)
	require.Len(t, pa, a.Layout.Total)
	require.Equal(t, pa, testenv.Read[float32](t, b.Params.Data), "same seed, same weights")
	require.NotEqual(t, pa, testenv.Read[float32](t, other.Params.Data), "another seed, other weights")
	// The draw goes in pieces; pieces that split every weight matrix give the same values.
	defer func(n int) { initChunk = n }(initChunk)
	initChunk = 100
	pieces := newInit(7)
	defer pieces.Free()
	require.Equal(t, pa, testenv.Read[float32](t, pieces.Params.Data), "same seed in pieces of 100, same weights")
	for i, s := range a.Layout.Specs {
		v := testenv.Read[float32](t, a.Params.View(i))
		require.Len(t, v, s.Len, s.Name)
		switch {
		case strings.HasSuffix(s.Name, "norm.weight"):
			for _, x := range v {
				require.Equal(t, float32(1), x, s.Name)
			}
		case strings.HasSuffix(s.Name, ".bias"):
			for _, x := range v {
				require.Zero(t, x, s.Name)
			}
		default:
			var sum, sq float64
			for _, x := range v {
				sum += float64(x)
				sq += float64(x) * float64(x)
			}
			n := float64(len(v))
			mean, sd := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
			require.InDelta(t, 0, mean, 5*0.02/math.Sqrt(n), s.Name)
			require.InDelta(t, 0.02, sd, 0.02*8/math.Sqrt(n), s.Name)
		}
	}
	require.Error(t, RandomInit(a, 1, math.NaN()))
}
