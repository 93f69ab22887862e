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
}

func (p *profile) add(op opID, dt time.Duration, flops, bytes float64) {
	s := &p.stats[op]
	s.Calls++
	s.Time += dt
	s.FLOPs += flops
	s.Bytes += bytes
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

// WriteProfile prints the per-op table: calls, time, share, GFLOP/s and GB/s.
func (d *Device) WriteProfile(w io.Writer) error {
	stats := d.Profile()
	var total time.Duration
	for _, s := range stats {
		total += s.Time
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "op\tcalls\ttime\tshare\tGFLOP/s\tGB/s\t\n")
	for _, s := range stats {
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
	fmt.Fprintf(tw, "total\t\t%s\t\t\t\t\n", total.Round(time.Microsecond))
	return tw.Flush()
}
