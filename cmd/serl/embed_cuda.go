//go:build serl_embed && serl_embed_cuda

package main

import (
	_ "embed"

	"github.com/serl-go/serl/loader"
)

// Only where build.sh built libserl_cuda.so (nvcc present).
//
//go:embed embedded/libserl_cuda.so
var libCUDA []byte

func init() { loader.RegisterEmbedded("cuda", libCUDA) }
