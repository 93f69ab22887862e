package kernels

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels/ref"
)

func init() { register("decode_advance", testDecodeAdvance) }

func (h *harness) getI32(x Tensor) []int32 {
	h.t.Helper()
	out := make([]int32, x.Len())
	require.NoError(h.t, Download(out, x))
	return out
}

// testDecodeAdvance checks every output of the op against the reference, exactly (integers), with and
// without the history and the ban flags, with patches (one out of range, skipped; the count reset to 0,
// and clamped to the buffer's capacity), rows whose next position lies past their table (slot −1) and
// full histories (nothing appended).
func testDecodeAdvance(t *testing.T, h *harness) {
	// by hand: block size 4, 3 blocks per row; row 0 at position 2 → 3 (block 0), row 1 at 3 → 4, the
	// start of its block 1, which a patch fills in just before
	tab := h.i32([]int32{5, 0, 0, 7, 0, 0}, 2, 3)
	ids, pos, lens, slots, steps := h.i32([]int32{-9, -9}), h.i32([]int32{2, 3}), h.i32([]int32{-9, -9}), h.i32([]int32{-9, -9}), h.i32([]int32{1, 4})
	ban, minNew := h.i32([]int32{1, 1}), h.i32([]int32{2, 9})
	patch := h.i32([]int32{1, 4, 9, 2, 8}) // one pair of two slots
	hand := DecodeAdvance{Tokens: h.i32([]int32{11, 12}), Patch: patch, Table: tab,
		IDs: ids, Pos: pos, SeqLens: lens, Slots: slots, Steps: steps, BanRows: ban, MinNew: minNew, BlockSize: 4}
	require.NoError(t, h.d.DecodeAdvance(hand))
	require.Equal(t, []int32{0, 4, 9, 2, 8}, h.getI32(patch), "the count is consumed")
	require.Equal(t, []int32{5, 0, 0, 7, 9, 0}, h.getI32(tab))
	require.Equal(t, []int32{11, 12}, h.getI32(ids))
	require.Equal(t, []int32{3, 4}, h.getI32(pos))
	require.Equal(t, []int32{4, 5}, h.getI32(lens))
	require.Equal(t, []int32{5*4 + 3, 9*4 + 0}, h.getI32(slots))
	require.Equal(t, []int32{2, 5}, h.getI32(steps))
	require.Equal(t, []int32{0, 1}, h.getI32(ban))
	// the same call again applies no patch: positions 4, 5 lie in blocks 1, 1 (5·… and 9·…)
	require.NoError(t, h.d.DecodeAdvance(hand))
	require.Equal(t, []int32{5, 0, 0, 7, 9, 0}, h.getI32(tab))
	require.Equal(t, []int32{0, 9*4 + 1}, h.getI32(slots))
	// a count above the capacity applies the pairs that fit
	require.NoError(t, Upload(patch, []int32{7, 1, 3, 2, 4}))
	require.NoError(t, h.d.DecodeAdvance(hand))
	require.Equal(t, []int32{5, 3, 4, 7, 9, 0}, h.getI32(tab))

	for _, n := range []int{1, 3, 17, 64, 257} {
		for _, bs := range []int{1, 4, 16} {
			for _, opt := range []struct{ hist, ban bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
				what := fmt.Sprintf("n=%d bs=%d hist=%v ban=%v", n, bs, opt.hist, opt.ban)
				const mb, ldHist = 5, 9
				rnd := func(k int, lo, hi int32) []int32 {
					x := make([]int32, k)
					for i := range x {
						x[i] = lo + h.rng.Int32N(hi-lo)
					}
					return x
				}
				tokens, table := rnd(n, 0, 1000), rnd(n*mb, 0, 500)
				pos := rnd(n, 0, int32(mb*bs)) // the last position of the table advances past it: slot −1
				pos[0] = int32(mb*bs - 1)
				steps := rnd(n, 0, ldHist+1) // = ldHist: the history is full, nothing appended
				patch := []int32{0}
				for _, at := range h.rng.Perm(n * mb)[:min(n, 7)] {
					patch = append(patch, int32(at), h.rng.Int32N(500))
				}
				patch = append(patch, int32(n*mb), 3, -1, 4) // out of range: skipped
				patch[0] = int32(len(patch) / 2)
				patch = append(patch, 0, 5) // capacity beyond the count: not applied
				args := DecodeAdvance{Tokens: h.i32(tokens), Patch: h.i32(patch), Table: h.i32(table, n, mb),
					IDs: h.i32(rnd(n, -5, 0)), Pos: h.i32(pos), SeqLens: h.i32(rnd(n, -5, 0)), Slots: h.i32(rnd(n, -5, 0)),
					Steps: h.i32(steps), BlockSize: bs}
				ids, lens, slots := make([]int32, n), make([]int32, n), make([]int32, n)
				var hist, banRows, minNew []int32
				if opt.hist {
					hist = rnd(n*ldHist, -5, 0)
					args.Hist = h.i32(hist, n, ldHist)
				}
				if opt.ban {
					banRows, minNew = rnd(n, 0, 2), rnd(n, 0, ldHist+2)
					args.BanRows, args.MinNew = h.i32(banRows), h.i32(minNew)
				}
				require.NoError(t, h.d.DecodeAdvance(args), what)
				ref.DecodeAdvance(tokens, patch, table, ids, pos, lens, slots, steps, hist, ldHist, banRows, minNew, bs, mb)
				require.Contains(t, slots, int32(-1), what)
				for _, c := range []struct {
					name string
					got  Tensor
					want []int32
				}{{"table", args.Table, table}, {"ids", args.IDs, ids}, {"pos", args.Pos, pos}, {"seq_lens", args.SeqLens, lens},
					{"slots", args.Slots, slots}, {"steps", args.Steps, steps}, {"hist", args.Hist, hist}, {"ban_rows", args.BanRows, banRows},
					{"patch", args.Patch, patch}} {
					if c.want != nil {
						require.True(t, slices.Equal(c.want, h.getI32(c.got)), "%s: %s", what, c.name)
					}
				}
			}
		}
	}

	ok := func() DecodeAdvance {
		return DecodeAdvance{Tokens: h.i32([]int32{1, 2}), Table: h.i32(make([]int32, 6), 2, 3), IDs: h.i32([]int32{0, 0}),
			Pos: h.i32([]int32{0, 0}), SeqLens: h.i32([]int32{0, 0}), Slots: h.i32([]int32{0, 0}), Steps: h.i32([]int32{0, 0}), BlockSize: 4}
	}
	require.NoError(t, h.d.DecodeAdvance(ok()))
	for _, c := range []struct {
		name   string
		mutate func(a *DecodeAdvance)
	}{
		{"block size 0", func(a *DecodeAdvance) { a.BlockSize = 0 }},
		{"short pos", func(a *DecodeAdvance) { a.Pos = h.i32([]int32{0}) }},
		{"nil slots", func(a *DecodeAdvance) { a.Slots = Tensor{} }},
		{"f32 ids", func(a *DecodeAdvance) { a.IDs = h.f32([]float32{0, 0}) }},
		{"flat table", func(a *DecodeAdvance) { a.Table = h.i32(make([]int32, 6)) }},
		{"even patch", func(a *DecodeAdvance) { a.Patch = h.i32([]int32{1, 2, 3, 4}) }},
		{"flat hist", func(a *DecodeAdvance) { a.Hist = h.i32(make([]int32, 6)) }},
		{"ban rows without min new", func(a *DecodeAdvance) { a.BanRows = h.i32([]int32{0, 0}) }},
	} {
		a := ok()
		c.mutate(&a)
		requireOpError(t, c.name, h.d.DecodeAdvance(a))
	}
}

// Bitcast views the same bytes as another dtype: F32 bits and U64 pairs in an I32 buffer round-trip
// through one upload, and misaligned or partial views are refused.
func TestBitcast(t *testing.T) {
	d := cpuDevice(t)
	x := d.MustAlloc(I32, 7)
	defer d.Free(x)
	f, err := x.MustSlice(0, 2).Bitcast(F32)
	require.NoError(t, err)
	u, err := x.MustSlice(2, 6).Bitcast(U64)
	require.NoError(t, err)
	require.Equal(t, []int{2}, u.Shape())
	require.NoError(t, Upload(x, []int32{int32(math.Float32bits(1.5)), int32(math.Float32bits(-2)), 1, 2, -1, 0x7fffffff, 9}))
	gf, gu := make([]float32, 2), make([]uint64, 2)
	require.NoError(t, Download(gf, f))
	require.NoError(t, Download(gu, u))
	require.Equal(t, []float32{1.5, -2}, gf)
	require.Equal(t, []uint64{2<<32 | 1, 0x7fffffff<<32 | 0xffffffff}, gu)
	for _, bad := range []Tensor{x.MustSlice(1, 3), x.MustSlice(0, 3), x.MustSlice(0, 6).MustReshape(3, 2)} {
		_, err := bad.Bitcast(U64)
		require.Error(t, err, "%s", bad)
	}
}
