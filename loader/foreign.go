package loader

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// OpenSystem dlopens a foreign system library (not a serl backend, so without the ABI check), trying
// each name in turn — sonames resolved by the dynamic linker, or paths — and returning the first that
// loads. It is for peers that serl is compared against, such as OpenBLAS in the benchmarks.
func OpenSystem(names ...string) (*Library, error) {
	var tried []string
	for _, name := range names {
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", name, err))
			continue
		}
		return &Library{Path: name, handle: h, syms: map[string]uintptr{}}, nil
	}
	return nil, fmt.Errorf("loader: cannot load any of:\n  %s", strings.Join(tried, "\n  "))
}
