package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fused ops are defined as the ops they replace, so each is held to those ops' bits on the same
// device (which the rest of the suite holds to the reference), in every dtype mix.

func init() {
	register("add_rmsnorm", testAddRMSNorm)
	register("rope_append", testRoPEAppend)
	register("rope_append_errors", testRoPEAppendErrors)
}

var floatDTypes = []DType{F32, BF16}

func testAddRMSNorm(t *testing.T, h *harness) {
	const eps = 1e-6
	// widths: under a vector, odd, a multiple of 8 (the GPU's bf16 vector path), Qwen2.5-0.5B's hidden size
	for _, c := range []struct{ n, dim int }{{1, 7}, {3, 64}, {5, 130}, {33, 8}, {17, 896}} {
		w := h.f32(h.randn(c.dim, 1))
		x0, r0 := h.randn(c.n*c.dim, 1), h.randn(c.n*c.dim, 1)
		for _, xdt := range floatDTypes {
			for _, rdt := range floatDTypes {
				for _, sdt := range floatDTypes {
					for _, ydt := range floatDTypes {
						name := fmt.Sprintf("n=%d dim=%d x %s res %s sum %s y %s", c.n, c.dim, xdt, rdt, sdt, ydt)
						x, _ := h.upload(xdt, x0, c.n, c.dim)
						res, _ := h.upload(rdt, r0, c.n, c.dim)
						sumA, yA, rstdA := h.poisonedAs(sdt, c.n, c.dim), h.poisonedAs(ydt, c.n, c.dim), h.poisoned(c.n)
						require.NoError(t, h.d.Add(sumA, x, res, 1), name)
						require.NoError(t, h.d.RMSNormFwd(yA, rstdA, sumA, w, eps), name)

						sumB, yB, rstdB := h.poisonedAs(sdt, c.n, c.dim), h.poisonedAs(ydt, c.n, c.dim), h.poisoned(c.n)
						require.NoError(t, h.d.AddRMSNormFwd(sumB, yB, rstdB, x, res, w, eps), name)
						requireSameBits(t, name+" sum", h.getAny(sumB), h.getAny(sumA))
						requireSameBits(t, name+" y", h.getAny(yB), h.getAny(yA))
						requireSameBits(t, name+" rstd", h.get(rstdB), h.get(rstdA))

						// the residual stream in place (sum = x, then sum = res), without rstd (inference)
						for i, in := range []struct {
							dt DType
							v  []float32
						}{{xdt, x0}, {rdt, r0}} {
							if in.dt != sdt {
								continue
							}
							s, _ := h.upload(sdt, in.v, c.n, c.dim)
							y := h.poisonedAs(ydt, c.n, c.dim)
							xs, rs := s, res
							if i == 1 {
								xs, rs = x, s
							}
							require.NoError(t, h.d.AddRMSNormFwd(s, y, Tensor{}, xs, rs, w, eps), name)
							requireSameBits(t, fmt.Sprintf("%s in place (%d) sum", name, i), h.getAny(s), h.getAny(sumA))
							requireSameBits(t, fmt.Sprintf("%s in place (%d) y", name, i), h.getAny(y), h.getAny(yA))
						}
					}
				}
			}
		}
	}

	x, res, sum, y := h.f32(h.randn(12, 1), 2, 6), h.f32(h.randn(12, 1), 2, 6), h.poisoned(2, 6), h.poisoned(2, 6)
	w := h.f32(h.randn(6, 1))
	requireOpError(t, "res without sum", h.d.AddRMSNormFwd(Tensor{}, y, Tensor{}, x, res, w, 1e-6))
	requireOpError(t, "y = sum", h.d.AddRMSNormFwd(sum, sum, Tensor{}, x, res, w, 1e-6))
	requireOpError(t, "y = x", h.d.AddRMSNormFwd(sum, x, Tensor{}, x, res, w, 1e-6))
	requireOpError(t, "short res", h.d.AddRMSNormFwd(sum, y, Tensor{}, x, h.poisoned(1, 6), w, 1e-6))
	big := h.poisoned(3, 6)
	err := requireOpError(t, "sum overlapping x by a row",
		h.d.AddRMSNormFwd(big.MustSlice(1, 3), y, Tensor{}, big.MustSlice(0, 2), res, w, 1e-6))
	require.ErrorContains(t, err, "sum overlaps x")
}

// ropeAppendCase is one shape of rope_append: T tokens, H query and KVH key/value heads of D, RoPE over
// the first Rot dimensions, a cache of NB blocks of BS slots.
type ropeAppendCase struct{ T, H, KVH, D, Rot, NB, BS int }

func testRoPEAppend(t *testing.T, h *harness) {
	cases := []ropeAppendCase{
		{1, 1, 1, 2, 2, 1, 1},
		{5, 4, 2, 16, 16, 4, 4},
		{17, 14, 2, 64, 64, 8, 4},   // Qwen2.5-0.5B's heads
		{6, 3, 1, 96, 32, 3, 8},     // dimensions past rot_dim pass through
		{2, 2, 1, 2200, 2180, 2, 2}, // more pairs (1090) than a GPU block holds cos/sin for at once (1024)
	}
	for _, c := range cases {
		slots := make([]int32, c.T) // distinct, one skipped token
		for i, s := range h.rng.Perm(c.NB * c.BS)[:c.T] {
			slots[i] = int32(s)
		}
		if c.T > 1 {
			slots[c.T/2] = -1
		}
		pos := make([]int32, c.T)
		for i := range pos {
			pos[i] = int32(h.rng.IntN(4000))
		}
		inv := hfInvFreq(c.Rot, 10000)
		q0, k0, v0 := h.randn(c.T*c.H*c.D, 1), h.randn(c.T*c.KVH*c.D, 1), h.randn(c.T*c.KVH*c.D, 1)
		bq0, bk0, bv0 := h.randn(c.H*c.D, 1), h.randn(c.KVH*c.D, 1), h.randn(c.KVH*c.D, 1)
		for _, qdt := range floatDTypes {
			for _, kvdt := range floatDTypes {
				for _, cdt := range floatDTypes {
					for _, bdt := range []DType{-1, F32, BF16} { // -1: no biases
						if c.D > 1000 && (qdt != kvdt || kvdt != cdt || bdt == F32) {
							continue // the long heads in two mixes
						}
						name := fmt.Sprintf("T=%d H=%d KVH=%d D=%d rot=%d q %s kv %s cache %s bias %s", c.T, c.H, c.KVH, c.D,
							c.Rot, qdt, kvdt, cdt, bdt)
						inputs := func() (RoPEAppend, [3]Tensor) {
							q, _ := h.upload(qdt, q0, c.T, c.H, c.D)
							k, _ := h.upload(kvdt, k0, c.T, c.KVH, c.D)
							v, _ := h.upload(kvdt, v0, c.T, c.KVH, c.D)
							ra := RoPEAppend{Q: q, K: k, V: v, Pos: h.i32(pos), InvFreq: h.f32(inv), RotDim: c.Rot, Slots: h.i32(slots),
								Cache: KVCache{K: h.poisonedAs(cdt, c.NB, c.BS, c.KVH, c.D), V: h.poisonedAs(cdt, c.NB, c.BS, c.KVH, c.D)}}
							var b [3]Tensor
							if bdt >= 0 {
								b[0], _ = h.upload(bdt, bq0)
								b[1], _ = h.upload(bdt, bk0)
								b[2], _ = h.upload(bdt, bv0)
								ra.BQ, ra.BK, ra.BV = b[0], b[1], b[2]
							}
							return ra, b
						}
						want, b := inputs()
						flat := func(x Tensor) Tensor { return x.MustReshape(x.Dim(0), x.Dim(1)*x.Dim(2)) }
						if bdt >= 0 {
							for i, y := range []Tensor{want.Q, want.K, want.V} {
								require.NoError(t, h.d.BiasAdd(flat(y), b[i]), name)
							}
						}
						require.NoError(t, h.d.RoPE(want.Q, want.Q, want.Pos, want.InvFreq, c.Rot, false, false), name)
						require.NoError(t, h.d.RoPE(want.K, want.K, want.Pos, want.InvFreq, c.Rot, false, false), name)
						require.NoError(t, h.d.KVAppend(want.Cache, want.K, want.V, want.Slots), name)

						got, _ := inputs()
						require.NoError(t, h.d.RoPEAppend(got), name)
						for _, o := range []struct {
							what      string
							got, want Tensor
						}{{"q", got.Q, want.Q}, {"k", got.K, want.K}, {"v", got.V, want.V},
							{"cache K", got.Cache.K, want.Cache.K}, {"cache V", got.Cache.V, want.Cache.V}} {
							requireSameBits(t, name+" "+o.what, h.getAny(o.got), h.getAny(o.want))
						}
					}
				}
			}
		}
	}
}

func testRoPEAppendErrors(t *testing.T, h *harness) {
	const T, H, KVH, D, NB, BS = 3, 2, 1, 8, 2, 4
	q0 := h.randn(T*H*D, 1)
	args := func() RoPEAppend {
		return RoPEAppend{Q: h.f32(q0, T, H, D), K: h.f32(h.randn(T*KVH*D, 1), T, KVH, D), V: h.f32(h.randn(T*KVH*D, 1), T, KVH, D),
			Pos: h.i32([]int32{0, 1, 2}), InvFreq: h.f32(hfInvFreq(D, 10000)), RotDim: D, Slots: h.i32([]int32{0, 5, -1}),
			Cache: KVCache{K: h.poisoned(NB, BS, KVH, D), V: h.poisoned(NB, BS, KVH, D)}}
	}
	require.NoError(t, h.d.RoPEAppend(args()))

	a := args()
	a.Pos = h.i32([]int32{0, -1, 2})
	err := requireOpError(t, "negative pos", h.d.RoPEAppend(a))
	require.ErrorContains(t, err, "rope_append: pos[1] = -1 is negative")
	if h.d.Backend() == "cpu" { // checked before anything is written (a GPU finds it on the device)
		requireSameBits(t, "q after a refused call", h.get(a.Q), q0)
	}
	a = args()
	a.Slots = h.i32([]int32{0, 8, 1})
	err = requireOpError(t, "slot past the cache", h.d.RoPEAppend(a))
	require.ErrorContains(t, err, "rope_append: slots[1] = 8 is out of range (cache has 8 slots)")
	if h.d.Backend() == "cpu" {
		requireSameBits(t, "q after a refused call", h.get(a.Q), q0)
	}

	a = args()
	a.BQ, a.BK = h.f32(h.randn(H*D, 1)), h.f32(h.randn(KVH*D, 1))
	require.ErrorContains(t, requireOpError(t, "two biases of three", h.d.RoPEAppend(a)), "all three or none")
	a = args()
	a.RotDim = 3
	requireOpError(t, "odd RotDim", h.d.RoPEAppend(a))
	a = args()
	a.V, _ = h.upload(BF16, h.randn(T*KVH*D, 1), T, KVH, D)
	requireOpError(t, "v's dtype differs from k's", h.d.RoPEAppend(a))
	a = args()
	a.Q = h.f32(q0, T, H*D/4, 4)
	requireOpError(t, "q's head_dim differs from the cache's", h.d.RoPEAppend(a))
	a = args()
	a.Slots = h.i32([]int32{0, 1})
	requireOpError(t, "short slots", h.d.RoPEAppend(a))
}
