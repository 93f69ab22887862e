//go:build serl_embed && serl_embed_cuda

package main

import (
	_ "embed"

	"github.com/serl-go/serl/kernels"
)

// Only where build.sh built libserl_cuda.so (nvcc present).
//
//go:embed embedded/libserl_cuda.so
var libCUDA []byte

func init() { kernels.RegisterEmbedded("cuda", libCUDA) }
