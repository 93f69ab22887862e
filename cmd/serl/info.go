package main

import (
	"fmt"
	"io"
)

func init() {
	addCommand(command{name: "info", summary: "show the device and native library (and a model's memory plan)", run: runInfo})
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", stderr)
	var df deviceFlags
	df.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	in := d.Info()
	fmt.Fprintf(stdout, "backend   %s\ndevice    %s\nlibrary   %s\nthreads   %d\nsimd      %s\nmemory    %.1f GiB total, %.1f GiB free\n",
		in.Backend, in.Name, in.Library, in.Threads, in.SIMD, float64(in.TotalMemory)/(1<<30), float64(in.FreeMemory)/(1<<30))
	return nil
}
