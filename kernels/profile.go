package kernels

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strconv"
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

// add sums o's calls, time, FLOPs and bytes into s.
func (s *OpStats) add(o OpStats) {
	s.Calls += o.Calls
	s.Time += o.Time
	s.FLOPs += o.FLOPs
	s.Bytes += o.Bytes
}

// rates is s's share of total (percent), GFLOP/s and GB/s, each 0 where its divisor is.
func (s OpStats) rates(total time.Duration) (share, gflops, gbytes float64) {
	if total > 0 {
		share = 100 * float64(s.Time) / float64(total)
	}
	if sec := s.Time.Seconds(); sec > 0 {
		gflops, gbytes = s.FLOPs/sec/1e9, s.Bytes/sec/1e9
	}
	return share, gflops, gbytes
}

type profile struct {
	stats [numOps]OpStats
	// Matrix products by shape: one op name covers products whose speed differs by an order of
	// magnitude (a [16k, 151936] head against a [16k, 128] value projection), so the tuning question
	// "which product is slow" needs the shapes, as PyTorch's profiler groups by input shapes.
	shapes  map[matmulShape]*OpStats
	pending matmulShape // the product in flight (set by matmul under d.mu, read when it is accounted)
	// The same per phase of the work (SetProfilePhase): one op's mean over a whole run mixes a decode
	// step's 64 rows with a prefill's thousands (the built-in model's rmsnorm_fwd: 98 µs a prefill call,
	// 8.4 µs a decode step's).
	phases map[string]*[numOps]OpStats
}

// matmulShape is a product's shape for the profile: C[M,N] (+)= op(A)[M,K]·op(B)[K,N], batch times.
type matmulShape struct {
	m, n, k, batch int32
	ta, tb, acc    bool // A, B transposed; C accumulated into (beta ≠ 0)
	a, b, c        DType
}

func (s matmulShape) String() string {
	return s.label(strconv.Itoa(int(s.m)), strconv.Itoa(int(s.n)), strconv.Itoa(int(s.k)))
}

// label names the shape with its dimensions written as given (a range where rows are grouped).
func (s matmulShape) label(m, n, k string) string {
	str := m + "×" + n + "×" + k + " "
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

func (p *profile) add(op opID, phase string, dt time.Duration, flops, bytes float64) {
	if p.phases == nil {
		p.phases = map[string]*[numOps]OpStats{}
	}
	ph := p.phases[phase]
	if ph == nil {
		ph = new([numOps]OpStats)
		p.phases[phase] = ph
	}
	for _, s := range []*OpStats{&p.stats[op], p.shape(op), &ph[op]} {
		if s != nil {
			s.add(OpStats{Calls: 1, Time: dt, FLOPs: flops, Bytes: bytes})
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

// SetProfilePhase names the phase of the work that the ops issued after it belong to ("prefill",
// "decode", "score", "update"; "" for none) and returns the name it replaces, so that a caller can
// restore it: defer d.SetProfilePhase(d.SetProfilePhase("decode")). While profiling, the table then
// splits the ops by phase as well. It costs a lock and nothing else when profiling is off.
func (d *Device) SetProfilePhase(name string) (prev string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, d.phase = d.phase, name
	return prev
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

// ProfilePhases returns the per-op accounting since SetProfiling(true) of each phase that ops ran in
// (SetProfilePhase; "" for ops outside every phase), each sorted by time, most first.
func (d *Device) ProfilePhases() map[string][]OpStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prof == nil {
		return nil
	}
	out := map[string][]OpStats{}
	for name, ph := range d.prof.phases {
		var ops []OpStats
		for op, s := range ph {
			if s.Calls > 0 {
				s.Op = opID(op).String()
				ops = append(ops, s)
			}
		}
		sort.Slice(ops, func(i, j int) bool { return ops[i].Time > ops[j].Time })
		out[name] = ops
	}
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

// profileShapeRows bounds the by-shape table: the products that matter, not every chunk's tail;
// profilePhaseRows the ops shown of each phase.
const (
	profileShapeRows = 12
	profilePhaseRows = 6
)

// shapeRow is one row of the by-shape table: the products of one shape, or of a family of shapes that
// differ only in one dimension within one power-of-two range (see groupShapes).
type shapeRow struct {
	OpStats
	shapes int // exact shapes summed in the row
}

// groupShapes folds the exact shapes into rows. A training run's products take their M (or, for a
// weight gradient, their K) from each batch's packed token count, and a decode's M from the batch that
// is still running, so an exact table scatters one product over hundreds of rows. Shapes that differ
// in one dimension only, within one range (2^(b-1), 2^b], share a row that names the range
// ("1632–2023×704×256"): the range keeps a decode's 4-row products apart from training's 2k-row ones,
// whose speeds differ by an order of magnitude. Each shape joins the largest such family it is in
// (ties: M, then K, then N); a shape in no family of two keeps its own row.
func groupShapes(shapes map[matmulShape]*OpStats) []shapeRow {
	const dims = 3 // m, k, n: the order ties are broken in
	dim := func(s *matmulShape, d int) *int32 { return [dims]*int32{&s.m, &s.k, &s.n}[d] }
	family := func(s matmulShape, d int) matmulShape {
		v := dim(&s, d)
		*v = -int32(bits.Len32(uint32(*v-1))) - 1 // the range, marked negative
		return s
	}
	size := map[matmulShape]int{}
	for s := range shapes {
		for d := range dims {
			size[family(s, d)]++
		}
	}
	type group struct {
		row    shapeRow
		lo, hi int32
		d      int
		sample matmulShape
	}
	groups := map[matmulShape]*group{}
	for s, st := range shapes {
		key, d := s, -1
		for c := range dims {
			if n := size[family(s, c)]; n >= 2 && (d < 0 || n > size[family(s, d)]) {
				d = c
			}
		}
		if d >= 0 {
			key = family(s, d)
		}
		g := groups[key]
		if g == nil {
			g = &group{d: d, sample: s, lo: math.MaxInt32}
			groups[key] = g
		}
		g.row.add(*st)
		g.row.shapes++
		if d >= 0 {
			v := *dim(&s, d)
			g.lo, g.hi = min(g.lo, v), max(g.hi, v)
		}
	}
	out := make([]shapeRow, 0, len(groups))
	for _, g := range groups {
		s := g.sample
		v := [dims]string{strconv.Itoa(int(s.m)), strconv.Itoa(int(s.k)), strconv.Itoa(int(s.n))}
		if g.row.shapes > 1 {
			v[g.d] = fmt.Sprintf("%d–%d", g.lo, g.hi)
		}
		g.row.Op = s.label(v[0], v[2], v[1])
		if g.row.shapes > 1 {
			g.row.Op += fmt.Sprintf(" (%d shapes)", g.row.shapes)
		}
		out = append(out, g.row)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// WriteProfile prints the per-op table (calls, time, share, GFLOP/s and GB/s), then the matrix
// products by shape (grouped as groupShapes says; the most expensive profileShapeRows rows, the rest
// summed in one; shares are of all ops' time, as above), then, where SetProfilePhase named phases, the
// ops of each phase with their mean time a call (the dearest profilePhaseRows, the rest summed).
func (d *Device) WriteProfile(w io.Writer) error {
	phases := d.ProfilePhases()
	stats := d.Profile()
	var rows []shapeRow
	d.mu.Lock()
	if d.prof != nil {
		rows = groupShapes(d.prof.shapes)
	}
	d.mu.Unlock()
	var total time.Duration
	for _, s := range stats {
		total += s.Time
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(s OpStats) {
		share, gf, gb := s.rates(total)
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
	if len(rows) == 0 {
		return writePhases(w, phases, total)
	}
	fmt.Fprintf(tw, "matmul shape (M×N×K)\tcalls\ttime\tshare\tGFLOP/s\tGB/s\t\n")
	shown := profileShapeRows
	if len(rows) == shown+1 {
		shown++ // one row either way: the row itself
	}
	var rest OpStats
	restShapes := 0
	for i, s := range rows {
		if i < shown {
			row(s.OpStats)
			continue
		}
		rest.add(s.OpStats)
		restShapes += s.shapes
	}
	if restShapes > 0 {
		rest.Op = fmt.Sprintf("%d more shapes", restShapes)
		row(rest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writePhases(w, phases, total)
}

// writePhases prints the by-phase table of WriteProfile, the phases by time, most first; ops outside
// every phase are "other". Nothing where no phase was named.
func writePhases(w io.Writer, phases map[string][]OpStats, total time.Duration) error {
	if len(phases) == 0 || len(phases) == 1 && phases[""] != nil {
		return nil
	}
	type phase struct {
		name string
		all  OpStats
		ops  []OpStats
	}
	var list []phase
	for name, ops := range phases {
		p := phase{name: name, ops: ops}
		if name == "" {
			p.name = "other"
		}
		for _, s := range ops {
			p.all.add(s)
		}
		p.all.Op = "all"
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].all.Time != list[j].all.Time {
			return list[i].all.Time > list[j].all.Time
		}
		return list[i].name < list[j].name
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(ph string, s OpStats, withMean bool) {
		share, gf, gb := s.rates(total)
		mean := "" // a phase's mean over all its ops would be no op's
		if withMean && s.Calls > 0 {
			mean = roundMean(s.Time / time.Duration(s.Calls)).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f%%\t%s\t%.2f\t%.2f\t\n", ph, s.Op, s.Calls, s.Time.Round(time.Microsecond), share,
			mean, gf, gb)
	}
	fmt.Fprintf(tw, "phase\top\tcalls\ttime\tshare\tmean\tGFLOP/s\tGB/s\t\n")
	for _, p := range list {
		row(p.name, p.all, false)
		var rest OpStats
		more := 0
		for i, s := range p.ops {
			if i < profilePhaseRows || len(p.ops) == profilePhaseRows+1 {
				row("", s, true)
				continue
			}
			rest.add(s)
			more++
		}
		if more > 0 {
			rest.Op = fmt.Sprintf("%d more ops", more)
			row("", rest, false)
		}
	}
	return tw.Flush()
}

// roundMean keeps a mean time a call to three significant digits or so (12.3µs, 1.23ms).
func roundMean(t time.Duration) time.Duration {
	for r := time.Nanosecond; ; r *= 10 {
		if t < 1000*r {
			return t.Round(r)
		}
	}
}
