package rl

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAlgorithm(t *testing.T) {
	for s, want := range map[string]Algorithm{"reinforce++": ReinforcePP, "GRPO": GRPO, " rloo ": RLOO} {
		got, err := ParseAlgorithm(s)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := ParseAlgorithm("ppo")
	require.ErrorContains(t, err, `unknown algorithm "ppo"`)

	c := DefaultConfig(RLOO)
	require.Equal(t, Config{Algorithm: RLOO, KLCoef: 1e-3, ClipEps: 0.2, RewardClip: 10}, c)
	require.NoError(t, c.Validate())
	for _, bad := range []Config{
		{Algorithm: "x", KLCoef: 1e-3, ClipEps: 0.2, RewardClip: 10},
		{Algorithm: GRPO, KLCoef: -1, ClipEps: 0.2, RewardClip: 10},
		{Algorithm: GRPO, KLCoef: math.NaN(), ClipEps: 0.2, RewardClip: 10},
		{Algorithm: GRPO, KLCoef: 1e-3, ClipEps: 0, RewardClip: 10},
		{Algorithm: GRPO, KLCoef: 1e-3, ClipEps: 1, RewardClip: 10},
		{Algorithm: GRPO, KLCoef: 1e-3, ClipEps: 0.2, RewardClip: 0},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
}

func TestKL(t *testing.T) {
	cases := []struct{ d, k1, k2, k3 float64 }{
		{0, 0, 0, 0},
		// k3(0.5) = e^−0.5 − 1 + 0.5 = 0.6065306597 − 0.5
		{0.5, 0.5, 0.125, 0.1065306597},
		// k3(−1) = e − 1 − 1
		{-1, -1, 0.5, 0.7182818285},
		// k3(2) = e^−2 + 1 = 0.1353352832 + 1
		{2, 2, 2, 1.1353352832},
	}
	for _, c := range cases {
		require.InDelta(t, c.k1, K1(c.d), 1e-10, "k1(%v)", c.d)
		require.InDelta(t, c.k2, K2(c.d), 1e-10, "k2(%v)", c.d)
		require.InDelta(t, c.k3, K3(c.d), 1e-10, "k3(%v)", c.d)
	}
}
