package kernels

import "github.com/serl-go/serl/loader"

// RegisterEmbedded offers the image of a backend's native library ("cpu", "cuda") carried inside the
// binary as the loader's last discovery candidate (written to the user cache and verified before
// dlopen). cmd/serl calls it from its embed files; it lives here so that commands talk to kernels and
// engine only and never to the loader (docs/ARCHITECTURE.md, "Layers").
func RegisterEmbedded(backend string, image []byte) { loader.RegisterEmbedded(backend, image) }
