//go:build serl_embed

package main

import (
	_ "embed"

	"github.com/serl-go/serl/kernels"
)

// build.sh copies the native libraries here and builds with -tags serl_embed, so bin/serl runs with no
// files beside it.
//
//go:embed embedded/libserl_cpu.so
var libCPU []byte

func init() { kernels.RegisterEmbedded("cpu", libCPU) }
