package model

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/serl-go/serl/kernels"
)

// RandomInit fills m's parameters for training from scratch: every weight matrix (embedding, lm_head,
// projections) from N(0, std²), every RMSNorm weight at 1 and every bias at 0 — the initialisation of
// transformers' Qwen2/Llama _init_weights with initializer_range = std. The draw is deterministic in
// seed and independent of the device: tensors are filled in layout order from one PCG stream.
func RandomInit(m *Model, seed uint64, std float64) error {
	if m.Params == nil {
		return fmt.Errorf("model: init of a frozen bf16 model (it keeps no master weights)")
	}
	if !(std >= 0) {
		return fmt.Errorf("model: init std %v must be ≥ 0", std)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e71))
	// Drawn and uploaded in pieces of at most initChunk elements, in order (the same stream, the same
	// values): a whole-tensor host buffer was the size of the largest tensor, 544 MB for Qwen2.5-0.5B's
	// embedding, on top of every device allocation.
	largest := 0
	for _, s := range m.Layout.Specs {
		largest = max(largest, s.Len)
	}
	host := make([]float32, min(initChunk, largest)) // a small model's whole largest tensor
	for i, s := range m.Layout.Specs {
		flat := m.Params.View(i).MustReshape(s.Len)
		for lo := 0; lo < s.Len; lo += initChunk {
			hi := min(lo+initChunk, s.Len)
			v := host[:hi-lo]
			switch {
			case strings.HasSuffix(s.Name, "norm.weight"):
				for j := range v {
					v[j] = 1
				}
			case strings.HasSuffix(s.Name, ".bias"):
				clear(v)
			default:
				for j := range v {
					v[j] = float32(rng.NormFloat64() * std)
				}
			}
			if err := kernels.Upload(flat.MustSlice(lo, hi), v); err != nil {
				return fmt.Errorf("model: init %s: %w", s.Name, err)
			}
		}
	}
	return m.SyncWeights()
}

// initChunk is RandomInit's piece: 4 MiB of float32 (a test lowers it).
var initChunk = 1 << 20
