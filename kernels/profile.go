package kernels

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// OpStats is the accounting of one op while profiling was on. Go's profiler cannot see inside native
// code, so the engine keeps its own per-op table.
type OpStats struct {
	Op    string
	Calls int64
	Time  time.Duration
	FLOPs float64 // floating-point operations (multiply-add = 2)
	Bytes float64 // bytes read and written, by the op's nominal traffic
}

type profile struct {
	stats [numOps]OpStats
	// Matrix products by shape: one op name covers products whose speed differs by an order of
	// magnitude (a [16k, 151936] head against a [16k, 128] value projection), so the tuning question
	// "which product is slow" needs the shapes, as PyTorch's profiler groups by input shapes.
	shapes  map[matmulShape]*OpStats
	pending matmulShape // the product in flight (set by matmul under d.mu, read when it is accounted)
}

// matmulShape is a product's shape for the profile: C[M,N] (+)= op(A)[M,K]·op(B)[K,N], batch times.
type matmulShape struct {
	m, n, k, batch int32
	ta, tb, acc    bool // A, B transposed; C accumulated into (beta ≠ 0)
	a, b, c        DType
}

func (s matmulShape) String() string {
	str := fmt.Sprintf("%d×%d×%d ", s.m, s.n, s.k)
	if s.batch > 1 {
		str = fmt.Sprintf("%d× %s", s.batch, str)
	}
	op := func(name string, t bool) string {
		if t {
			return name + "ᵀ"
		}
		return name
	}
	str += op("A", s.ta) + "·" + op("B", s.tb)
	if s.acc {
		str += " +C"
	}
	if s.a == s.b && s.b == s.c {
		return str + " " + s.a.String()
	}
	return fmt.Sprintf("%s %v·%v→%v", str, s.a, s.b, s.c)
}

func (p *profile) add(op opID, dt time.Duration, flops, bytes float64) {
	for _, s := range []*OpStats{&p.stats[op], p.shape(op)} {
		if s != nil {
			s.Calls++
			s.Time += dt
			s.FLOPs += flops
			s.Bytes += bytes
		}
	}
}

// shape is the by-shape entry of the product being accounted, or nil for another op.
func (p *profile) shape(op opID) *OpStats {
	if op != opMatMul {
		return nil
	}
	if p.shapes == nil {
		p.shapes = map[matmulShape]*OpStats{}
	}
	s := p.shapes[p.pending]
	if s == nil {
		s = &OpStats{Op: p.pending.String()}
		p.shapes[p.pending] = s
	}
	return s
}

// SetProfiling switches per-op accounting on (resetting it) or off. On devices that run asynchronously
// each op is followed by a synchronisation while it is on, so times are real.
func (d *Device) SetProfiling(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.prof = &profile{}
	} else {
		d.prof = nil
	}
}

// Profiling reports whether per-op accounting is on (a graph launch is one call it cannot see into, so
// engine/generate issues ops one by one while it is).
func (d *Device) Profiling() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prof != nil
}

// Profile returns the per-op accounting since SetProfiling(true), sorted by time, most first.
func (d *Device) Profile() []OpStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prof == nil {
		return nil
	}
	var out []OpStats
	for op, s := range d.prof.stats {
		if s.Calls > 0 {
			s.Op = opID(op).String()
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time > out[j].Time })
	return out
}

// MatMulShapes returns the accounting of matrix products by shape since SetProfiling(true), sorted by
// time, most first; Op names the shape: "M×N×K A·Bᵀ bf16" for C[M,N] = A[M,K]·B[N,K]ᵀ, with the batch
// count before it when above 1, "+C" when C is accumulated into, and the three dtypes when they differ.
func (d *Device) MatMulShapes() []OpStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prof == nil {
		return nil
	}
	var out []OpStats
	for _, s := range d.prof.shapes {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// profileShapeRows bounds the by-shape table: the products that matter, not every chunk's tail.
const profileShapeRows = 12

// WriteProfile prints the per-op table (calls, time, share, GFLOP/s and GB/s), then the matrix
// products by shape (the most expensive profileShapeRows; shares are of all ops' time, as above).
func (d *Device) WriteProfile(w io.Writer) error {
	stats := d.Profile()
	var total time.Duration
	for _, s := range stats {
		total += s.Time
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(s OpStats) {
		sec := s.Time.Seconds()
		share, gf, gb := 0.0, 0.0, 0.0
		if total > 0 {
			share = 100 * float64(s.Time) / float64(total)
		}
		if sec > 0 {
			gf, gb = s.FLOPs/sec/1e9, s.Bytes/sec/1e9
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f%%\t%.2f\t%.2f\t\n", s.Op, s.Calls, s.Time.Round(time.Microsecond), share, gf, gb)
	}
	fmt.Fprintf(tw, "op\tcalls\ttime\tshare\tGFLOP/s\tGB/s\t\n")
	for _, s := range stats {
		row(s)
	}
	fmt.Fprintf(tw, "total\t\t%s\t\t\t\t\n", total.Round(time.Microsecond))
	if err := tw.Flush(); err != nil {
		return err
	}
	shapes := d.MatMulShapes()
	if len(shapes) == 0 {
		return nil
	}
	fmt.Fprintf(tw, "matmul shape (M×N×K)\tcalls\ttime\tshare\tGFLOP/s\tGB/s\t\n")
	shown := profileShapeRows
	if len(shapes) == shown+1 {
		shown++ // one row either way: the shape itself
	}
	var rest OpStats
	for i, s := range shapes {
		if i < shown {
			row(s)
			continue
		}
		rest.Calls += s.Calls
		rest.Time += s.Time
		rest.FLOPs += s.FLOPs
		rest.Bytes += s.Bytes
	}
	if n := len(shapes) - shown; n > 0 {
		rest.Op = fmt.Sprintf("%d more shapes", n)
		row(rest)
	}
	return tw.Flush()
}
