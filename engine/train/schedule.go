// Package train is the optimisation step shared by supervised and RL training: gradient accumulation
// over micro-batches, global-norm clipping, AdamW and the learning-rate schedule.
package train

import (
	"fmt"
	"math"
)

// Schedule is transformers' cosine_with_min_lr as SeRL uses it (docs/SERL.md §5.5): linear warm-up from 0
// over Warmup optimizer steps, then a cosine from Peak down to MinRatio·Peak at step Total.
type Schedule struct {
	Peak     float64
	Warmup   int
	Total    int
	MinRatio float64
}

// NewSchedule makes the schedule of a run of total optimizer steps with a warm-up share (0.03 in SeRL,
// rounded up as transformers' get_scheduler does) and a floor ratio (0.1).
func NewSchedule(peak float64, total int, warmupRatio, minRatio float64) (Schedule, error) {
	if !(peak >= 0) || total < 1 || warmupRatio < 0 || warmupRatio >= 1 || minRatio < 0 || minRatio > 1 {
		return Schedule{}, fmt.Errorf("train: schedule: peak %g, total %d, warm-up ratio %g, floor %g out of range", peak, total, warmupRatio, minRatio)
	}
	return Schedule{Peak: peak, Warmup: int(math.Ceil(warmupRatio * float64(total))), Total: total, MinRatio: minRatio}, nil
}

// LR is the learning rate of optimizer step k (the first step is k = 0, whose rate is 0 during a
// warm-up, as in the official runs). Past Total the rate stays at the floor: serl sizes one schedule
// to the whole run (docs/SERL.md D3), so the official code's periodic rise never happens.
func (s Schedule) LR(k int) float64 {
	if k < s.Warmup {
		return s.Peak * float64(k) / float64(s.Warmup)
	}
	if s.Total <= s.Warmup {
		return s.Peak
	}
	p := math.Min(1, float64(k-s.Warmup)/float64(s.Total-s.Warmup))
	return s.Peak * (s.MinRatio + (1-s.MinRatio)*0.5*(1+math.Cos(math.Pi*p)))
}
