package kernels

import (
	"fmt"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() { register("graph/embedding-bwd", testGraphEmbeddingBwd) }

// testGraphEmbeddingBwd: the embedding backward (on a GPU a device sort of the ids, no read-back) captured
// once and launched with new ids — many repeats, in the last rounds a single id — and new gradients: the
// table gradient is, bit for bit, float32 sums in token order from the table's value (the CPU library's
// order) and what the op gives run directly. A bad id found on replay is reported naming the op and the
// first bad token, once, and the next launch succeeds.
func testGraphEmbeddingBwd(t *testing.T, h *harness) {
	d := h.d
	for _, c := range []struct {
		n, dim, vocab int
		dt            DType
	}{{1, 5, 3, F32}, {300, 130, 7, BF16}, {1031, 64, 509, F32}, {2048, 17, 50, BF16},
		// a GPU's columns over several blocks, and over more columns than 64 blocks of threads
		{300, 600, 7, BF16}, {5, 16500, 2, F32},
		// past a GPU sort's single tile, over 18 key bits (Qwen2.5's vocabulary)
		{20000, 8, 151936, BF16}} {
		name := fmt.Sprintf("n=%d dim=%d vocab=%d dout %s", c.n, c.dim, c.vocab, c.dt)
		ids, dout, dtable := h.alloc(I32, c.n), h.alloc(c.dt, c.n, c.dim), h.alloc(F32, c.vocab, c.dim)
		// round r: ids drawn from few distinct values (round 0: from the whole vocabulary), spread over it
		var hostIDs []int32
		var held, dt0 []float32
		inputs := func(r int) {
			distinct := min(c.vocab, []int{c.vocab, 5, 2, 1}[r%4])
			hostIDs = make([]int32, c.n)
			for i := range hostIDs {
				hostIDs[i] = int32((h.rng.IntN(distinct)*7919 + r) % c.vocab)
			}
			require.NoError(t, Upload(ids, hostIDs))
			held = h.randn(c.n*c.dim, 1)
			if c.dt == BF16 {
				b := make([]uint16, len(held))
				for i, v := range held {
					b[i] = ref.BF16Bits(v)
					held[i] = ref.BF16Float(b[i])
				}
				require.NoError(t, Upload(dout, b))
			} else {
				require.NoError(t, Upload(dout, held))
			}
			dt0 = h.randn(c.vocab*c.dim, 1)
			require.NoError(t, Upload(dtable, dt0))
		}
		want := func() []float32 {
			w := append([]float32(nil), dt0...)
			for tk, id := range hostIDs {
				for j := 0; j < c.dim; j++ {
					w[int(id)*c.dim+j] += held[tk*c.dim+j]
				}
			}
			return w
		}
		op := func() error { return d.EmbeddingBwd(dtable, dout, ids) }

		inputs(0)
		require.NoError(t, op(), "warm-up") // a GPU's scratch grows outside capture
		warm := h.get(dtable)
		requireSameBits(t, name+": direct", warm, want())
		before := d.Transfers()
		g, err := d.Capture(op)
		require.NoError(t, err, name)
		require.Equal(t, before, d.Transfers(), "%s: a capture moves no data", name)
		require.Equal(t, 1, g.Ops(), name)
		requireSameBits(t, name+": captured op must not run", h.get(dtable), warm)
		for r := 1; r <= 6; r++ {
			inputs(r)
			require.NoError(t, g.Launch(), name)
			got := h.get(dtable)
			requireSameBits(t, fmt.Sprintf("%s round %d: graph vs token-order sums", name, r), got, want())
			require.NoError(t, Upload(dtable, dt0))
			require.NoError(t, op())
			requireSameBits(t, fmt.Sprintf("%s round %d: graph vs direct", name, r), got, h.get(dtable))
		}

		// bad ids on replay: the first in token order is reported
		bad := append([]int32(nil), hostIDs...)
		bad[c.n/2] = int32(c.vocab)
		bad[c.n-1] = -3
		require.NoError(t, Upload(ids, bad))
		err = g.Launch()
		if err == nil {
			err = d.Sync() // an asynchronous device reports at the next synchronisation
		}
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "embedding_bwd", name)
		if c.n > 1 {
			require.Contains(t, err.Error(), fmt.Sprintf("ids[%d] = %d", c.n/2, c.vocab), name)
		} else {
			require.Contains(t, err.Error(), "ids[0] = -3", name)
		}
		require.NoError(t, d.Sync(), "%s: the error is reported once", name)
		inputs(7)
		require.NoError(t, g.Launch(), name)
		requireSameBits(t, name+": after the bad launch", h.get(dtable), want())
		g.Free()
	}
}
