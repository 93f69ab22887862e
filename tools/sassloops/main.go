// Command sassloops prints the instruction mix of each CUDA kernel's hottest loop from the static SASS
// (cuobjdump -sass), on a machine without a GPU, with the instructions issued per tensor-core mma
// (HMMA); internal/sass says how a loop is found.
//
//	go run ./tools/sassloops [-arch sm_90] [-lib build/libserl_cuda.so] [REGEX]
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/serl-go/serl/internal/sass"
)

func main() {
	arch := flag.String("arch", "sm_90", "architecture whose SASS is read (sm_80 or sm_90)")
	lib := flag.String("lib", "build/libserl_cuda.so", "the CUDA library")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: sassloops [-arch sm_90] [-lib build/libserl_cuda.so] [REGEX]\n\nREGEX selects kernels by mangled name (default: mma).")
		flag.PrintDefaults()
	}
	flag.Parse()
	pattern := "mma"
	if flag.NArg() > 0 {
		pattern = flag.Arg(0)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		fail(fmt.Errorf("sassloops: REGEX %q: %w", pattern, err))
	}
	names, err := sass.Functions(*lib, *arch)
	if err != nil {
		fail(fmt.Errorf("sassloops: %w", err))
	}
	var picked []string
	for _, n := range names {
		if re.MatchString(n) {
			picked = append(picked, n)
		}
	}
	if len(picked) == 0 {
		fail(fmt.Errorf("sassloops: no kernel of %s (%s) matches %q", *lib, *arch, pattern))
	}
	text, err := sass.Dump(*lib, *arch, picked...)
	if err != nil {
		fail(fmt.Errorf("sassloops: %w", err))
	}
	for _, k := range sass.Parse(text) {
		l, ok := k.HottestLoop()
		if !ok {
			fmt.Printf("%s: no loop\n", k.Name)
			continue
		}
		per := "no HMMA"
		if l.HMMA > 0 {
			per = fmt.Sprintf("%.1f per HMMA", l.PerHMMA())
		}
		fmt.Printf("%s\n  loop %#x-%#x: %d instructions, %d HMMA, %s\n", k.Name, l.Lo, l.Hi, len(l.Instrs), l.HMMA, per)
		var mix []string
		for i, c := range l.Mix() {
			if i == 16 {
				break
			}
			mix = append(mix, fmt.Sprintf("%s %d", c.Op, c.N))
		}
		fmt.Printf("  %s\n", strings.Join(mix, ", "))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
