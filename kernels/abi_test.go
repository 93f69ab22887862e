package kernels

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/loader"
)

type cField struct {
	typ, field   string
	offset, size int
}

// libraryLayout reads serl_layout(): every args field's offset and size as the C compiler laid it out.
func libraryLayout(t *testing.T, lib *loader.Library) map[string][]cField {
	fn, err := lib.Sym("serl_layout")
	require.NoError(t, err)
	var count int32
	base := loader.Call(fn, uintptr(unsafe.Pointer(&count)))
	require.NotZero(t, base)
	type rawField struct {
		typ, field   uintptr
		offset, size int32
	}
	raw := unsafe.Slice((*rawField)(loader.Pointer(base)), count)
	out := map[string][]cField{}
	for _, f := range raw {
		name := loader.GoString(f.typ)
		out[name] = append(out[name], cField{name, loader.GoString(f.field), int(f.offset), int(f.size)})
	}
	return out
}

// TestABILayout checks every Go mirror in abi.go field by field against the library's own layout, so
// a header change that is not mirrored in Go fails here rather than corrupting memory at run time.
// Every library that is built takes part: the CUDA library's layout needs no GPU, only the library.
func TestABILayout(t *testing.T) {
	d := cpuDevice(t)
	libs := []*loader.Library{d.lib}
	if cu, err := loader.Open("cuda"); err == nil {
		libs = append(libs, cu)
	} else {
		t.Logf("no CUDA library to check (%v)", err)
	}
	for _, lib := range libs {
		t.Run(lib.Backend, func(t *testing.T) { checkLayout(t, d, libraryLayout(t, lib)) })
	}
}

func checkLayout(t *testing.T, d *Device, layout map[string][]cField) {
	for name := range layout {
		_, ok := abiStructs[name]
		require.True(t, ok, "serl.h declares %s but kernels/abi.go has no mirror", name)
	}
	for name, v := range abiStructs {
		cf, ok := layout[name]
		require.True(t, ok, "kernels/abi.go mirrors %s, which the library does not declare", name)
		rt := reflect.TypeOf(v)
		require.Equal(t, len(cf), rt.NumField(), "%s: field count Go vs C", name)
		for i := 0; i < rt.NumField(); i++ {
			gf := rt.Field(i)
			names := strings.Split(gf.Tag.Get("c"), ",")
			require.Contains(t, names, cf[i].field, "%s field %d: Go %s is tagged %v, C has %s", name, i, gf.Name, names, cf[i].field)
			require.Equal(t, cf[i].offset, int(gf.Offset), "%s.%s offset", name, cf[i].field)
			require.Equal(t, cf[i].size, int(gf.Type.Size()), "%s.%s size", name, cf[i].field)
		}
		require.LessOrEqual(t, rt.Size(), unsafe.Sizeof(d.argbuf), "%s does not fit the device args buffer", name)
		// No hidden padding: every byte of the struct belongs to a named field, so a field added to the
		// header in the wrong place shows up here and not as a silent gap.
		end := 0
		for _, f := range cf {
			require.Equal(t, end, f.offset, "%s.%s: %d bytes of padding before it (group int32 fields in pairs)", name, f.field, f.offset-end)
			end = f.offset + f.size
		}
		require.Equal(t, int(rt.Size()), end, "%s: %d bytes of padding at the end", name, int(rt.Size())-end)
	}
}

// TestABISizeMismatch: an args struct whose size word disagrees with the library's is refused with
// an ABI error that says so — the first-call guard against a Go/C layout drift.
func TestABISizeMismatch(t *testing.T) {
	d := cpuDevice(t)
	x := d.MustAlloc(F32, 4)
	defer d.Free(x)
	d.mu.Lock()
	a := args[scaleArgs](d)
	a.size += 8
	a.n, a.x, a.out, a.alpha = 4, x.addr(), x.addr(), 1
	err := d.run(opScale, 0, 0)
	d.mu.Unlock()
	require.Error(t, err)
	var se *loader.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, int32(loader.StatusABI), se.Status)
	require.Contains(t, err.Error(), "layout mismatch")
}

// TestMissingOp: an op the library does not export gives an error naming the symbol.
func TestMissingOp(t *testing.T) {
	d := cpuDevice(t)
	d.mu.Lock()
	saved := d.syms[opScale]
	d.syms[opScale] = 0
	d.mu.Unlock()
	x := d.MustAlloc(F32, 1)
	defer d.Free(x)
	err := d.Scale(x, x, 1)
	d.mu.Lock()
	d.syms[opScale] = saved
	d.mu.Unlock()
	require.ErrorContains(t, err, "does not export serl_scale")
}

func TestForeignDeviceTensor(t *testing.T) {
	a, err := Open("cpu", 1)
	require.NoError(t, err)
	defer a.Close()
	d := cpuDevice(t)
	x := a.MustAlloc(F32, 3)
	y := d.MustAlloc(F32, 3)
	defer d.Free(y)
	require.ErrorContains(t, d.Scale(y, x, 1), "another device")
}

func TestAllocErrors(t *testing.T) {
	d := cpuDevice(t)
	_, err := d.Alloc(F32)
	require.Error(t, err)
	_, err = d.Alloc(F32, -1)
	require.Error(t, err)
	_, err = d.Alloc(F32, 1<<40, 1<<20)
	require.Error(t, err)
	x := d.MustAlloc(F32, 6)
	defer d.Free(x)
	require.Error(t, Upload(x, make([]float32, 5)), "length mismatch")
	require.Error(t, Upload(x, make([]int32, 6)), "dtype mismatch")
	_, err = x.Reshape(4, 2)
	require.Error(t, err)
	v, err := x.Reshape(2, 3)
	require.NoError(t, err)
	_, err = v.Slice(1, 3)
	require.Error(t, err)
	r, err := v.Slice(1, 2)
	require.NoError(t, err)
	require.NoError(t, Upload(x, []float32{0, 1, 2, 3, 4, 5}))
	got := make([]float32, 3)
	require.NoError(t, Download(got, r))
	require.Equal(t, []float32{3, 4, 5}, got)
}

func TestProfileTable(t *testing.T) {
	d, err := Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	x := d.MustAlloc(F32, 1000)
	d.SetProfiling(true)
	for i := 0; i < 3; i++ {
		require.NoError(t, d.Scale(x, x, 1))
	}
	require.NoError(t, d.Add(x, x, x, 1))
	st := d.Profile()
	require.Len(t, st, 2)
	calls := map[string]int64{}
	for _, s := range st {
		calls[s.Op] = s.Calls
	}
	require.Equal(t, map[string]int64{"scale": 3, "add": 1}, calls)
	var b strings.Builder
	require.NoError(t, d.WriteProfile(&b))
	require.Contains(t, b.String(), "GFLOP/s")
	require.Contains(t, b.String(), "scale")
	require.NotContains(t, b.String(), "matmul shape", "no products, no by-shape table")
	require.NotContains(t, b.String(), "phase", "no phase named, no by-phase table")
}

// Ops are also accounted by the phase SetProfilePhase names, which the table prints with each op's mean
// time a call; ops outside every phase are "other".
func TestProfilePhases(t *testing.T) {
	d, err := Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	x := d.MustAlloc(F32, 1000)
	d.SetProfiling(true)
	require.NoError(t, d.Scale(x, x, 1))
	require.Equal(t, "", d.SetProfilePhase("decode"))
	for i := 0; i < 3; i++ {
		require.NoError(t, d.Scale(x, x, 1))
	}
	require.Equal(t, "decode", d.SetProfilePhase("prefill"))
	require.NoError(t, d.Add(x, x, x, 1))
	require.NoError(t, d.Scale(x, x, 1))
	require.Equal(t, "prefill", d.SetProfilePhase(""))
	calls := map[string]map[string]int64{}
	for ph, ops := range d.ProfilePhases() {
		calls[ph] = map[string]int64{}
		for _, s := range ops {
			calls[ph][s.Op] = s.Calls
		}
	}
	require.Equal(t, map[string]map[string]int64{"": {"scale": 1}, "decode": {"scale": 3}, "prefill": {"add": 1, "scale": 1}}, calls)
	var b strings.Builder
	require.NoError(t, d.WriteProfile(&b))
	out := b.String()
	require.Contains(t, out, "mean")
	for _, ph := range []string{"decode", "prefill", "other"} {
		require.Regexp(t, `(?m)^\s*`+ph+`\s+all\s`, out)
	}
	require.Regexp(t, `(?m)^\s+scale\s+3\s`, out, "decode's scale row: its own calls")
	d.SetProfiling(true) // a new profile starts empty
	require.Empty(t, d.ProfilePhases())
	for dur, want := range map[time.Duration]string{999: "999ns", 12345: "12.3µs", 1234567: "1.23ms", 12345678901: "12.3s"} {
		require.Equal(t, want, roundMean(dur).String())
	}
}

// The profile splits matrix products by shape (transposes, accumulation and dtypes included), and the
// table lists the dearest profileShapeRows of them and sums the rest in one row.
func TestProfileMatMulShapes(t *testing.T) {
	d, err := Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	mm := func(m, n, k int, tb bool, beta float32, c DType) {
		t.Helper()
		bShape := []int{k, n}
		if tb {
			bShape = []int{n, k}
		}
		A, B, C := d.MustAlloc(F32, m, k), d.MustAlloc(F32, bShape...), d.MustAlloc(c, m, n)
		defer func() { d.Free(A); d.Free(B); d.Free(C) }()
		require.NoError(t, d.MatMul(MatMul{A: A, B: B, C: C, TransB: tb, Alpha: 1, Beta: beta}))
	}
	d.SetProfiling(true)
	for i := 0; i < 3; i++ {
		mm(64, 32, 16, true, 0, F32)
	}
	mm(64, 32, 16, true, 1, F32) // accumulating: another row
	mm(8, 4, 2, false, 0, BF16)  // f32·f32→bf16
	for n := 1; n <= profileShapeRows; n++ {
		mm(1, n, 1, false, 0, F32)
	}
	shapes := d.MatMulShapes()
	require.Len(t, shapes, 3+profileShapeRows)
	calls := map[string]int64{}
	for _, s := range shapes {
		calls[s.Op] = s.Calls
	}
	require.Equal(t, int64(3), calls["64×32×16 A·Bᵀ f32"])
	require.Equal(t, int64(1), calls["64×32×16 A·Bᵀ +C f32"])
	require.Equal(t, int64(1), calls["8×4×2 A·B f32·f32→bf16"])
	require.Equal(t, int64(1), calls["1×12×1 A·B f32"])
	require.Equal(t, "14× 1024×1024×64 Aᵀ·B +C bf16", matmulShape{1024, 1024, 64, 14, true, false, true, BF16, BF16, BF16}.String())
	var b strings.Builder
	require.NoError(t, d.WriteProfile(&b))
	out := b.String()
	require.Contains(t, out, "matmul shape (M×N×K)")
	require.Contains(t, out, "64×32×16 A·Bᵀ f32")
	require.Contains(t, out, "1×9–12×1 A·B f32 (4 shapes)") // N within one power-of-two range: one row
	require.NotContains(t, out, "more shape")               // 8 rows: all shown
	d.SetProfiling(true)                                    // a new profile starts empty
	require.Empty(t, d.MatMulShapes())
}

// The table folds shapes that differ in one dimension within one power-of-two range into a row, each
// shape into its largest family, and sums the rows past profileShapeRows in one.
func TestProfileShapeGroups(t *testing.T) {
	shapes := map[matmulShape]*OpStats{}
	at := time.Duration(1000)
	add := func(m, n, k int32, ta, tb bool) {
		at-- // the earlier a shape is added, the dearer it is
		shapes[matmulShape{m: m, n: n, k: k, ta: ta, tb: tb, a: F32, b: F32, c: F32}] = &OpStats{Calls: 2, Time: at}
	}
	for _, m := range []int32{1632, 1835, 1965, 2023} { // training's forward: M is the packed tokens
		add(m, 704, 256, false, true)
	}
	for _, k := range []int32{1632, 1835, 1965} { // the weight gradient: K is
		add(704, 256, k, true, false)
	}
	for _, m := range []int32{64, 12, 16, 4} { // decode: M is the running batch, apart from training's
		add(m, 704, 256, false, true)
	}
	for i := range profileShapeRows { // one row each (N = 2^i, all in different ranges)
		add(1, 1<<i, 3, false, false)
	}
	rows := groupShapes(shapes)
	got := map[string]shapeRow{}
	for i, r := range rows {
		got[r.Op] = r
		if i > 0 {
			require.GreaterOrEqual(t, rows[i-1].Time, r.Time, "rows sorted by time")
		}
	}
	require.Len(t, rows, 5+profileShapeRows)
	for op, n := range map[string]int{
		"1632–2023×704×256 A·Bᵀ f32 (4 shapes)":                4,
		"704×256×1632–1965 Aᵀ·B f32 (3 shapes)":                3,
		"12–16×704×256 A·Bᵀ f32 (2 shapes)":                    2,
		"64×704×256 A·Bᵀ f32":                                  1,
		"4×704×256 A·Bᵀ f32":                                   1,
		fmt.Sprintf("1×%d×3 A·B f32", 1<<(profileShapeRows-1)): 1,
	} {
		require.Contains(t, got, op)
		require.Equal(t, n, got[op].shapes, op)
		require.Equal(t, int64(2*n), got[op].Calls, op)
	}
	d, err := Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	d.SetProfiling(true)
	d.prof.shapes = shapes
	var b strings.Builder
	require.NoError(t, d.WriteProfile(&b))
	out := b.String()
	require.Contains(t, out, "1632–2023×704×256 A·Bᵀ f32 (4 shapes)")
	require.Contains(t, out, "5 more shapes") // the last 5 rows, one shape each
	require.NotContains(t, out, fmt.Sprintf("1×%d×3 ", 1<<(profileShapeRows-1)))
	for s := range shapes { // one row past the table: it gets its own row, not a sum of one
		if s.m == 1 && s.n >= 1<<(profileShapeRows-4) {
			delete(shapes, s)
		}
	}
	b.Reset()
	require.NoError(t, d.WriteProfile(&b))
	require.Contains(t, b.String(), fmt.Sprintf("1×%d×3 A·B f32", 1<<(profileShapeRows-5)))
	require.NotContains(t, b.String(), "more shape")
}

// Every op of serl.h is exported by every backend under test: a backend missing one fails here, not
// at its first call in a training run.
func TestEveryOpExported(t *testing.T) {
	for _, d := range testDevices(t) {
		for op := opID(0); op < numOps; op++ {
			require.NotZero(t, d.syms[op], "%s library %s does not export serl_%s", d.Backend(), d.lib.Path, op)
		}
	}
	// The CUDA library where it is built, GPU or not.
	cu, err := loader.Open("cuda")
	if err != nil {
		t.Logf("no CUDA library to check (%v)", err)
		return
	}
	for op := opID(0); op < numOps; op++ {
		_, err := cu.Sym("serl_" + opNames[op])
		require.NoError(t, err, "cuda library %s", cu.Path)
	}
}
