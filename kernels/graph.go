package kernels

import (
	"errors"
	"fmt"

	"github.com/serl-go/serl/loader"
)

// Graph is a captured op sequence (serl_graph_*, csrc/serl.h): the ops issued inside Device.Capture,
// with their arguments frozen — tensors' addresses, shapes, scalars — and replayed by one native call
// per Launch, reading whatever the tensors hold then. On a GPU it is a CUDA graph (one launch instead
// of hundreds of ~5 µs purego calls); on the CPU the library records and replays the same way, so code
// that uses graphs runs and is tested everywhere. The tensors a graph names must stay allocated while it
// may be launched; Free it before freeing them.
type Graph struct {
	d   *Device
	h   uintptr
	ops int // ops issued during capture (for messages)
}

// ErrCapturing is the error of a call a capture refuses: allocation, upload, download, freeing,
// synchronising, or an op that cannot be captured (those refused natively say which).
var ErrCapturing = errors.New("refused while the device captures a graph (Device.Capture)")

// graphSyms are the graph entry points, resolved on first use (a library without them fails then).
type graphSyms struct {
	begin, end, launch, free uintptr
}

func (d *Device) graphFns() (*graphSyms, error) {
	if d.graph.begin != 0 {
		return &d.graph, nil
	}
	var g graphSyms
	for _, s := range []struct {
		p    *uintptr
		name string
	}{{&g.begin, "serl_graph_begin"}, {&g.end, "serl_graph_end"}, {&g.launch, "serl_graph_launch"},
		{&g.free, "serl_graph_free"}} {
		var err error
		if *s.p, err = d.lib.Sym(s.name); err != nil {
			return nil, err
		}
	}
	d.graph = g
	return &d.graph, nil
}

// Capture records the ops that fn issues on d into a Graph instead of running them. fn must issue only
// ops: Alloc, Free, Upload, Download, a nested Capture and Launch are refused with ErrCapturing, as is
// natively an op that cannot be captured, and a refusal fails the capture even when fn ignores it. fn's
// own error (return an op's error) fails it too, and no graph is made. On a GPU, run the same ops once outside capture first: an op whose scratch memory would grow
// is refused during capture. Captures on one device do not nest.
func (d *Device) Capture(fn func() error) (g *Graph, err error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("kernels: capture: device is closed")
	}
	if d.capturing {
		err := d.refuseCapture("capture (captures do not nest)")
		d.mu.Unlock()
		return nil, err
	}
	syms, err := d.graphFns()
	if err != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("kernels: capture: %w", err)
	}
	if st := d.caller.Call2(syms.begin, d.ctx, 0); st != 0 {
		err := d.statusError("graph_begin", st)
		d.mu.Unlock()
		return nil, err
	}
	d.capturing, d.capErr, d.capOps = true, nil, 0
	d.mu.Unlock()

	// End the capture however fn leaves (an error or a panic): the context must not stay capturing.
	defer func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.capturing = false
		h := loader.Call(syms.end, d.ctx)
		var endErr error
		if h == 0 {
			endErr = &OpError{Op: "graph_end", Err: &loader.StatusError{Status: loader.StatusState,
				Msg: loader.GoString(loader.Call(d.fnLastError, d.ctx))}}
		}
		// Buffers freed during capture were kept so that the graph could not name freed memory.
		for _, t := range d.capFrees {
			d.freeLocked(t)
		}
		d.capFrees = nil
		fail := firstErr(d.capErr, err, endErr)
		if r := recover(); r != nil {
			if h != 0 {
				loader.Call(syms.free, d.ctx, h)
			}
			panic(r)
		}
		if fail != nil {
			if h != 0 {
				loader.Call(syms.free, d.ctx, h)
			}
			g, err = nil, fmt.Errorf("kernels: capture: %w", fail)
			return
		}
		g, err = &Graph{d: d, h: h, ops: d.capOps}, nil
	}()
	return nil, fn()
}

// hostCall is the error of a host-side call (what: its name in messages) on a closed device or during a
// capture, which refuses it (refuseCapture); d.mu must be held.
func (d *Device) hostCall(what string) error {
	if d.closed {
		return fmt.Errorf("kernels: %s: device is closed", what)
	}
	return d.refuseCapture(what)
}

// refuseCapture is the error of a call that a capture refuses (nil when the device is not capturing);
// d.mu must be held. It also spoils the capture, so that fn ignoring the error still gets no graph.
// Callers whose message costs an allocation test d.capturing first.
func (d *Device) refuseCapture(what string) error {
	if !d.capturing {
		return nil
	}
	err := fmt.Errorf("kernels: %s: %w", what, ErrCapturing)
	if d.capErr == nil {
		d.capErr = err
	}
	return err
}

// Launch replays the graph on its device: asynchronous on a GPU, like any op. An error an op finds in
// tensor contents (an index out of range) is reported by Launch on the CPU and by the next download on a
// GPU, naming the op.
func (g *Graph) Launch() error {
	if g == nil || g.h == 0 {
		return fmt.Errorf("kernels: graph launch: the graph is freed")
	}
	d := g.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.hostCall("graph launch"); err != nil {
		return err
	}
	if st := d.caller.Call2(d.graph.launch, d.ctx, g.h); st != 0 {
		return d.statusError("graph_launch", st)
	}
	return nil
}

// Ops is the number of ops issued while the graph was captured (empty ones included).
func (g *Graph) Ops() int { return g.ops }

// Free destroys the graph (a second Free does nothing). A launch already queued on a GPU completes.
func (g *Graph) Free() {
	if g == nil || g.h == 0 {
		return
	}
	d := g.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		loader.Call(d.graph.free, d.ctx, g.h)
	}
	g.h = 0
}
