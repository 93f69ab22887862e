package mpi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A missing MPI library is an error naming what was tried and how to install Open MPI. (The calls
// themselves are exercised on 2 and 3 ranks by engine/dist's tests under mpirun.)
func TestOpenMissingLibrary(t *testing.T) {
	_, err := Open("libmpi-not-here.so.40")
	require.ErrorContains(t, err, "libmpi-not-here.so.40")
	require.ErrorContains(t, err, "apt-get install openmpi-bin libopenmpi3")
}

// A library that is not MPI is refused by the first call it lacks.
func TestOpenNotMPI(t *testing.T) {
	_, err := Open("libc.so.6")
	require.ErrorContains(t, err, "libc.so.6 does not export MPI_Init_thread (serl needs Open MPI)")
}
