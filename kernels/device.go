// Package kernels is the typed Go API over a serl native backend: devices, buffers and shaped tensors,
// one Go method per native op that checks shapes and returns errors, a pure-Go reference of every op
// (package kernels/ref) and one conformance suite that every backend passes.
//
// A Device is safe for concurrent use, but ops on one device run one at a time: the engine drives each
// device from one goroutine and the native library spreads each op over its own threads.
package kernels

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/serl-go/serl/loader"
)

type opID int

// Ops, in the order of csrc/serl.h. The names are the export names without the serl_ prefix.
const (
	opCopy opID = iota
	opMemset
	opMatMul
	opEmbeddingFwd
	opEmbeddingBwd
	opRMSNormFwd
	opRMSNormBwd
	opRoPE
	opAttentionFwd
	opAttentionBwd
	opKVAppend
	opDecodeAttention
	opSwiGLUFwd
	opSwiGLUBwd
	opBiasAdd
	opBiasBwd
	opAdd
	opScale
	opCast
	opLogProbFwd
	opLogProbBwd
	opSample
	opWhiten
	opGroupBaseline
	opGradNorm
	opAdamW
	opNCCLUniqueID
	opNCCLInit
	opNCCLAllReduce
	opNCCLBroadcast
	opNCCLPoll
	opNCCLFree
	opGatherActions
	opKLReturns
	opPPOCoef
	opDecodeAdvance
	opRoPEAppend
	numOps
)

var opNames = [numOps]string{
	"copy", "memset", "matmul", "embedding_fwd", "embedding_bwd", "rmsnorm_fwd", "rmsnorm_bwd", "rope",
	"attention_fwd", "attention_bwd", "kv_append", "decode_attention", "swiglu_fwd", "swiglu_bwd",
	"bias_add", "bias_bwd", "add", "scale", "cast", "logprob_fwd", "logprob_bwd", "sample", "whiten",
	"group_baseline", "grad_norm", "adamw", "nccl_unique_id", "nccl_init", "nccl_all_reduce",
	"nccl_broadcast", "nccl_poll", "nccl_free",
	"gather_actions", "kl_returns", "ppo_coef", "decode_advance", "rope_append",
}

func (o opID) String() string { return opNames[o] }

// Info describes a device.
type Info struct {
	Backend string // "cpu" or "cuda"
	Name    string // e.g. the CPU model
	Library string // path of the loaded native library
	Threads int
	SIMD    string // CPU vector ISA in use: avx512bf16, avx512 or avx2 ("none" on GPUs)
	// SIMDCPU is the best one the CPU has. It differs from SIMD under SERL_SIMD, and on Intel CPUs with
	// AVX-512 BF16, whose pair instruction runs at half float32's multiply-add rate (csrc/cpu/core.c).
	SIMDCPU     string
	TotalMemory int64
	FreeMemory  int64
	// Fallback: opened as "auto", a GPU answered but could not be used (why, in the CUDA library's
	// words), so the device is the CPU. Empty otherwise, and where no GPU answers at all.
	Fallback string
}

// Device is one native backend context.
type Device struct {
	lib         *loader.Library
	ctx         uintptr
	hostVisible bool
	info        Info

	fnCreate, fnDestroy, fnLastError, fnAlloc, fnFree, fnSync, fnInfo uintptr

	mu     sync.Mutex
	caller loader.Caller
	// argbuf holds the args struct of the op in flight. It lives as long as the Device, so passing its
	// address to native code allocates nothing (a stack struct would escape to the heap per call).
	argbuf [96]uint64
	syms   [numOps]uintptr
	prof   *profile
	phase  string // the profile's phase for the ops that follow (SetProfilePhase)
	live   int64  // bytes allocated now
	peak   int64
	xfer   Transfers
	closed bool

	// graph capture (graph.go)
	graph     graphSyms
	capturing bool
	capErr    error    // the first call refused during capture
	capOps    int      // ops issued during capture
	capFrees  []Tensor // buffers freed during capture, released when it ends
}

// Transfers counts host↔device copies (Upload and Download; device-to-device copies are not
// transfers). The engine pins them per training and decode step in tests, and reports them.
type Transfers struct {
	Uploads, Downloads         int64
	UploadBytes, DownloadBytes int64
}

// Sub is t − u: the copies made between two readings.
func (t Transfers) Sub(u Transfers) Transfers {
	return Transfers{Uploads: t.Uploads - u.Uploads, Downloads: t.Downloads - u.Downloads,
		UploadBytes: t.UploadBytes - u.UploadBytes, DownloadBytes: t.DownloadBytes - u.DownloadBytes}
}

func (t Transfers) String() string {
	return fmt.Sprintf("%d uploads (%d bytes), %d downloads (%d bytes)", t.Uploads, t.UploadBytes, t.Downloads, t.DownloadBytes)
}

// Transfers returns the host↔device copies made through this device so far.
func (d *Device) Transfers() Transfers {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.xfer
}

// Open creates a device: "cpu", "cuda", or "auto" (CUDA when its library loads and a GPU answers,
// else CPU; a GPU that answers but cannot be used is said in Info().Fallback, and a CUDA setting the
// library refuses is an error). threads ≤ 0 means $SERL_THREADS or the number of CPUs.
//
// SERL_CPU_HOST_VISIBLE=0 opens the CPU device as a GPU is seen from Go: its tensors are not host
// visible (Tensor.F32 and friends return nil), so every upload, download and device-only branch a GPU
// takes runs on the CPU too; `./build.sh test` runs the whole suite a second time that way.
func Open(backend string, threads int) (*Device, error) {
	if _, err := cpuHostVisible(); err != nil {
		return nil, err
	}
	switch backend {
	case "cpu", "cuda":
		return open(backend, threads)
	case "auto":
		d, err := open("cuda", threads)
		if err == nil {
			return d, nil
		}
		// A setting of the CUDA library's that it refuses (SERL_CUDA_DEVICE, SERL_CUDA_ATTN) is the
		// user's mistake on a machine whose GPU answered: an error, not a job run on the CPU instead.
		var ce *contextError
		if errors.As(err, &ce) && strings.Contains(ce.why, "SERL_CUDA_") {
			return nil, err
		}
		c, cerr := open("cpu", threads)
		if cerr != nil {
			return nil, cerr
		}
		// "no GPU answers" opens the CUDA library's message for a machine without one
		// (serl_context_create, csrc/cuda/context.cu); any other refusal is worth saying.
		if errors.As(err, &ce) && !strings.Contains(ce.why, "no GPU answers") {
			c.info.Fallback = ce.why
		}
		return c, nil
	}
	return nil, fmt.Errorf("kernels: unknown device %q (want auto, cpu or cuda)", backend)
}

// contextError: the native library loaded but refused to create a context, and said why.
type contextError struct{ path, backend, why string }

func (e *contextError) Error() string {
	return fmt.Sprintf("kernels: %s: cannot create a %s context: %s", e.path, e.backend, e.why)
}

func open(backend string, threads int) (*Device, error) {
	lib, err := loader.Open(backend)
	if err != nil {
		return nil, err
	}
	visible, err := cpuHostVisible()
	if err != nil {
		return nil, err
	}
	d := &Device{lib: lib, hostVisible: backend == "cpu" && visible}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{{&d.fnCreate, "serl_context_create"}, {&d.fnDestroy, "serl_context_destroy"},
		{&d.fnLastError, "serl_last_error"}, {&d.fnAlloc, "serl_alloc"}, {&d.fnFree, "serl_free"},
		{&d.fnSync, "serl_sync"}, {&d.fnInfo, "serl_device_info"}} {
		if *s.p, err = lib.Sym(s.name); err != nil {
			return nil, err
		}
	}
	// A missing op is not fatal here: calling it returns an error naming the symbol, and the
	// conformance suite fails for every op a backend lacks.
	for op := opID(0); op < numOps; op++ {
		d.syms[op], _ = lib.Sym("serl_" + opNames[op])
	}
	d.ctx = loader.Call(d.fnCreate, uintptr(threads))
	if d.ctx == 0 {
		// serl_last_error(NULL) says why context creation failed (an unsupported CPU, a bad SERL_SIMD).
		why := loader.GoString(loader.Call(d.fnLastError, 0))
		if why == "" {
			why = "no reason given"
		}
		return nil, &contextError{path: lib.Path, backend: backend, why: why}
	}
	a := args[deviceInfoArgs](d)
	if st := d.caller.Call2(d.fnInfo, d.ctx, uintptr(unsafe.Pointer(a))); st != 0 {
		err := d.statusError("device_info", st)
		d.Close()
		return nil, err
	}
	n := 0
	for n < len(a.name) && a.name[n] != 0 {
		n++
	}
	d.info = Info{Backend: backend, Name: string(a.name[:n]), Library: lib.Path, Threads: int(a.threads),
		SIMD: simdName(a.simd), SIMDCPU: simdName(a.simdCPU), TotalMemory: a.totalMemory, FreeMemory: a.freeMemory}
	runtime.SetFinalizer(d, (*Device).Close)
	return d, nil
}

// cpuHostVisible reads SERL_CPU_HOST_VISIBLE: unset or 1, CPU tensors are host visible; 0, they are not.
func cpuHostVisible() (bool, error) {
	switch v := os.Getenv("SERL_CPU_HOST_VISIBLE"); v {
	case "", "1":
		return true, nil
	case "0":
		return false, nil
	default:
		return false, fmt.Errorf("kernels: SERL_CPU_HOST_VISIBLE=%q (want 0 or 1)", v)
	}
}

func simdName(s int32) string {
	switch s {
	case simdAVX512BF16:
		return "avx512bf16"
	case simdAVX512:
		return "avx512"
	case simdAVX2:
		return "avx2"
	case 0:
		return "none"
	}
	return fmt.Sprintf("simd(%d)", s)
}

// Info describes the device.
func (d *Device) Info() Info { return d.info }

// Backend is "cpu" or "cuda".
func (d *Device) Backend() string { return d.info.Backend }

// HostVisible reports whether tensors' memory can be read directly (Tensor.F32 and friends).
func (d *Device) HostVisible() bool { return d.hostVisible }

// Close releases the native context. Buffers must not be used afterwards.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	loader.Call(d.fnDestroy, d.ctx)
	runtime.SetFinalizer(d, nil)
}

// Sync waits for every op queued on the device (a GPU runs ops asynchronously; on the CPU every op is
// done when it returns) and reports an error an earlier op found in tensor contents on the device — an
// index out of range, which a GPU checks without a host round trip — naming that op. Downloads report
// such errors too.
func (d *Device) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.hostCall("sync"); err != nil {
		return err
	}
	if st := d.caller.Call2(d.fnSync, d.ctx, 0); st != 0 {
		return d.statusError("sync", st)
	}
	return nil
}

// MemoryInUse returns the bytes allocated through this device now and at the peak.
func (d *Device) MemoryInUse() (live, peak int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live, d.peak
}

// args returns the device's args scratch as a zeroed *T with its size word set.
func args[T any](d *Device) *T {
	var zero T
	if unsafe.Sizeof(zero) > unsafe.Sizeof(d.argbuf) {
		panic("kernels: args struct larger than the device's args buffer")
	}
	p := (*T)(unsafe.Pointer(&d.argbuf))
	*p = zero
	*(*uint32)(unsafe.Pointer(p)) = uint32(unsafe.Sizeof(zero))
	return p
}

// OpError is a failed op: the op's name and why.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return "kernels: " + e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

func opErr(op string, format string, a ...any) error {
	return &OpError{Op: op, Err: fmt.Errorf(format, a...)}
}

func (d *Device) statusError(op string, st int32) error {
	msg := loader.GoString(loader.Call(d.fnLastError, d.ctx))
	return &OpError{Op: op, Err: &loader.StatusError{Status: st, Msg: msg}}
}

// run calls op with the args in d.argbuf; d.mu must be held. flops and bytes feed the profiler.
func (d *Device) run(op opID, flops, bytes float64) error {
	if d.closed {
		return opErr(op.String(), "device is closed")
	}
	fn := d.syms[op]
	if fn == 0 {
		return opErr(op.String(), "%s does not export serl_%s", d.lib.Path, op)
	}
	if d.capturing {
		d.capOps++
		// recorded, not run: nothing to profile (a profiling sync would spoil the capture)
		if st := d.caller.Call2(fn, d.ctx, uintptr(unsafe.Pointer(&d.argbuf))); st != 0 {
			return d.statusError(op.String(), st)
		}
		return nil
	}
	var t0 time.Time
	if d.prof != nil {
		t0 = time.Now()
	}
	st := d.caller.Call2(fn, d.ctx, uintptr(unsafe.Pointer(&d.argbuf)))
	if d.prof != nil {
		if !d.hostVisible {
			d.caller.Call2(d.fnSync, d.ctx, 0)
		}
		d.prof.add(op, d.phase, time.Since(t0), flops, bytes)
	}
	if st != 0 {
		return d.statusError(op.String(), st)
	}
	return nil
}

// check validates one tensor argument: present, on this device, of dtype dt, with at least n elements.
func (d *Device) check(op, name string, t Tensor, dt DType, n int) error {
	if !t.Valid() {
		return opErr(op, "%s: nil tensor", name)
	}
	if t.buf.dev != d {
		return opErr(op, "%s: tensor belongs to another device", name)
	}
	if t.dtype != dt {
		return opErr(op, "%s: dtype %s, want %s", name, t.dtype, dt)
	}
	if t.Len() < n {
		return opErr(op, "%s: %s has %d elements, needs %d", name, t, t.Len(), n)
	}
	return nil
}

// checkFloat is check for a tensor stored as F32 or BF16 (the ops compute in float32 either way).
func (d *Device) checkFloat(op, name string, t Tensor, n int) error {
	if t.Valid() && t.dtype != F32 && t.dtype != BF16 {
		return opErr(op, "%s: dtype %s, want f32 or bf16", name, t.dtype)
	}
	return d.check(op, name, t, t.dtype, n)
}

// checkFloatOpt is checkFloat for an optional tensor.
func (d *Device) checkFloatOpt(op, name string, t Tensor, n int) error {
	if t.buf == nil {
		return nil
	}
	return d.checkFloat(op, name, t, n)
}

// checkAlias refuses an output that starts at an input's address with another dtype: ops may work in
// place, but only on memory of one element type.
func checkAlias(op, outName string, out Tensor, inName string, in Tensor) error {
	if out.Valid() && in.Valid() && out.addr() == in.addr() && out.dtype != in.dtype {
		return opErr(op, "%s (%s) aliases %s (%s) with another dtype", outName, out.dtype, inName, in.dtype)
	}
	return nil
}

// checkOpt is check for an optional tensor: a zero Tensor is allowed and passes address 0.
func (d *Device) checkOpt(op, name string, t Tensor, dt DType, n int) error {
	if t.buf == nil {
		return nil
	}
	return d.check(op, name, t, dt, n)
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
