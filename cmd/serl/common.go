package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pkg/profile"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// interruptContext is cancelled by Ctrl-C or SIGTERM, so that long work stops at its next step.
func interruptContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// interrupted words a cancellation for the user; other errors pass unchanged.
func interrupted(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return err
}

// deviceFlags are the flags every subcommand that computes shares: the device, its threads, the
// precision, and profiling of the Go side (pkg/profile) and of the native ops (the engine's per-op
// table).
type deviceFlags struct {
	device    string
	threads   int
	precision string
	prof      string
	profDir   string
	opTable   bool
}

func (f *deviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.device, "device", "auto", "compute device: auto, cpu or cuda")
	fs.IntVar(&f.threads, "threads", 0, "CPU threads of the native library (0: $SERL_THREADS or all CPUs)")
	fs.StringVar(&f.precision, "precision", "f32", "f32 (float32 everywhere) or bf16 (float32 master weights, gradients and optimizer; bf16 weight copy, activations and KV cache)")
	fs.StringVar(&f.prof, "profile", "", "write a Go profile: cpu, mem or trace")
	fs.StringVar(&f.profDir, "profile-dir", ".", "directory for --profile output")
	fs.BoolVar(&f.opTable, "op-profile", false, "print a per-native-op time/FLOP table at the end, and the matrix products by shape")
}

// prec is the --precision value.
func (f *deviceFlags) prec() (model.Precision, error) {
	p, err := model.ParsePrecision(f.precision)
	if err != nil {
		return 0, usagef("--precision: %v", err)
	}
	return p, nil
}

// open opens the device and starts profiling; the returned stop function ends both. The first line of
// output says which device runs, as docs/ARCHITECTURE.md ("Building and loading") asks of --device auto.
func (f *deviceFlags) open(stderr io.Writer) (*kernels.Device, func(), error) {
	if f.threads < 0 {
		return nil, nil, usagef("--threads %d: want 0 (all CPUs) or a positive count", f.threads)
	}
	var stopProf func()
	switch f.prof {
	case "":
		stopProf = func() {}
	case "cpu", "mem", "trace":
		mode := map[string]func(*profile.Profile){"cpu": profile.CPUProfile, "mem": profile.MemProfile, "trace": profile.TraceProfile}[f.prof]
		// NoShutdownHook: Ctrl-C must reach serl's own handler so that training can checkpoint.
		p := profile.Start(mode, profile.ProfilePath(f.profDir), profile.NoShutdownHook, profile.Quiet)
		stopProf = p.Stop
	default:
		return nil, nil, usagef("--profile %q: want cpu, mem or trace", f.prof)
	}
	d, err := kernels.Open(f.device, f.threads)
	if err != nil {
		stopProf()
		return nil, nil, err
	}
	in := d.Info()
	fmt.Fprintf(stderr, "serl: device %s (%s, %d threads, %s)\n", in.Backend, in.Name, in.Threads, in.SIMD)
	if in.Fallback != "" {
		fmt.Fprintf(stderr, "serl: --device auto took the CPU: %s\n", in.Fallback)
	}
	if f.opTable {
		d.SetProfiling(true)
	}
	stop := func() {
		if f.opTable {
			fmt.Fprintln(stderr, "native ops:")
			d.WriteProfile(stderr)
		}
		stopProf()
	}
	return d, stop, nil
}
