package train

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// SeRL's schedule: lr 5e-7, 2000 optimizer steps, 3% warm-up (60 steps), floor 10% (docs/SERL.md §5.5).
func TestScheduleSeRL(t *testing.T) {
	s, err := NewSchedule(5e-7, 2000, 0.03, 0.1)
	require.NoError(t, err)
	require.Equal(t, 60, s.Warmup)
	near := func(want, got float64) { require.InDelta(t, want, got, 1e-20, "want %g got %g", want, got) }
	near(0, s.LR(0))           // the first update has LR 0
	near(5e-7*30/60, s.LR(30)) // half-way through warm-up
	near(5e-7, s.LR(60))       // peak
	near(5e-8, s.LR(2000))     // floor at the end
	near(5e-8, s.LR(4000))     // and after it (no periodic rise)
	mid := 60 + (2000-60)/2    // p = 1/2: cos = 0 → 0.1 + 0.9·0.5 = 0.55
	near(5e-7*0.55, s.LR(mid))
	// p = 1/4 by hand: 0.1 + 0.9·½(1 + cos(π/4)) = 0.1 + 0.45·1.7071068 = 0.8681981
	q := 60 + (2000-60)/4
	near(5e-7*(0.1+0.45*(1+math.Cos(math.Pi*float64(q-60)/1940))), s.LR(q))
	require.InDelta(t, 0.8681981, s.LR(q)/5e-7, 2e-4)
	for k := 61; k < 2000; k++ {
		require.LessOrEqual(t, s.LR(k), s.LR(k-1), "monotone after warm-up at %d", k)
	}
}

func TestScheduleErrors(t *testing.T) {
	_, err := NewSchedule(1e-3, 0, 0.03, 0.1)
	require.Error(t, err)
	_, err = NewSchedule(1e-3, 10, 1, 0.1)
	require.Error(t, err)
	_, err = NewSchedule(-1, 10, 0, 0.1)
	require.Error(t, err)
	s, err := NewSchedule(1e-3, 10, 0, 0.1)
	require.NoError(t, err)
	require.Equal(t, 1e-3, s.LR(0), "no warm-up starts at the peak")
}
