package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/serl-go/serl/engine/dist"
)

// inGroup runs a command as one rank of the process group it was launched in (mpirun, srun; one
// process otherwise). Rank 0 speaks; the others are silent but for their errors. A rank that fails
// ends the whole job at once (MPI_Abort) rather than leaving the others to time out in a collective.
func inGroup(stdout, stderr io.Writer, run func(c *dist.Comm, stdout, stderr io.Writer) error) error {
	c, err := dist.Init()
	if err != nil {
		return err
	}
	if c.Size() == 1 {
		return run(c, stdout, stderr)
	}
	pickGPU(c.LocalRank())
	out, errw := stdout, stderr
	if c.Rank() != 0 {
		out, errw = io.Discard, io.Discard
	}
	err = run(c, out, errw)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "serl: rank %d of %d: %v\n", c.Rank(), c.Size(), err)
		c.Abort(1)
		return err
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// pickGPU gives each rank on a node its own GPU: SERL_CUDA_DEVICE (read by the CUDA library when it
// creates its context, after this) becomes the rank's local rank, unless it is set already or the
// launcher bound one GPU to the rank (CUDA_VISIBLE_DEVICES naming a single device, as Slurm's
// --gpus-per-task 1 does), which is then device 0.
func pickGPU(local int) {
	if os.Getenv("SERL_CUDA_DEVICE") != "" {
		return
	}
	if vis := os.Getenv("CUDA_VISIBLE_DEVICES"); vis != "" && !strings.Contains(vis, ",") {
		return
	}
	os.Setenv("SERL_CUDA_DEVICE", strconv.Itoa(local))
}
