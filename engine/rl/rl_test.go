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
