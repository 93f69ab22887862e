// Package sass reads the static SASS of a CUDA library (cuobjdump -sass) on a machine without a GPU, to
// answer one speed question from the code alone: how many instructions a kernel's hottest loop issues
// per tensor-core mma (HMMA). A tensor core waits on issue when that number is high; the forward
// attention's loop at head_dim 64 issued 21 per mma before its softmax went to base 2
// (docs/ARCHITECTURE.md). tools/sassloops prints it; this package's test holds serl's attention kernels
// to it on every build that has nvcc.
package sass

import (
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Instr is one SASS instruction: its address in the kernel, its opcode with modifiers (HMMA.16816.F32.BF16)
// and its text without the predicate.
type Instr struct {
	Addr int
	Op   string
	Text string
}

// Kernel is one function's instructions in address order, under its mangled name.
type Kernel struct {
	Name string
	Body []Instr
}

var (
	insRE  = regexp.MustCompile(`/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;`)
	predRE = regexp.MustCompile(`^@!?U?P[T0-9]+\s+`)
	braRE  = regexp.MustCompile(`\b0x([0-9a-f]+)`)
)

// Parse splits cuobjdump -sass output into kernels.
func Parse(sass string) []Kernel {
	var out []Kernel
	for _, line := range strings.Split(sass, "\n") {
		if _, name, ok := strings.Cut(line, "Function :"); ok {
			out = append(out, Kernel{Name: strings.TrimSpace(name)})
			continue
		}
		m := insRE.FindStringSubmatch(line)
		if m == nil || len(out) == 0 {
			continue
		}
		addr, err := strconv.ParseInt(m[1], 16, 64)
		if err != nil {
			continue
		}
		text := predRE.ReplaceAllString(strings.TrimSpace(m[2]), "")
		op, _, _ := strings.Cut(text, " ")
		k := &out[len(out)-1]
		k.Body = append(k.Body, Instr{Addr: int(addr), Op: op, Text: text})
	}
	return out
}

// Loop is the span of a kernel from a backward branch's target to the branch, both included. Its
// counts are static: both sides of a branch inside the body are in it.
type Loop struct {
	Lo, Hi int // addresses of its first instruction and of the branch
	Instrs []Instr
	HMMA   int
}

// PerHMMA is the loop's instructions per HMMA (0 without any).
func (l Loop) PerHMMA() float64 {
	if l.HMMA == 0 {
		return 0
	}
	return float64(len(l.Instrs)) / float64(l.HMMA)
}

// Mix counts the loop's instructions by opcode family (the opcode before its first dot), most common
// first, ties by name.
func (l Loop) Mix() []OpCount {
	n := map[string]int{}
	for _, in := range l.Instrs {
		fam, _, _ := strings.Cut(in.Op, ".")
		n[fam]++
	}
	out := make([]OpCount, 0, len(n))
	for op, c := range n {
		out = append(out, OpCount{op, c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// OpCount is one opcode family's count in a loop.
type OpCount struct {
	Op string
	N  int
}

// HottestLoop is the kernel's loop with the most HMMA, the longest among equals (the longest of all in a
// kernel without HMMA); false when the kernel has no backward branch.
func (k Kernel) HottestLoop() (Loop, bool) {
	at := make(map[int]int, len(k.Body))
	for i, in := range k.Body {
		at[in.Addr] = i
	}
	var best Loop
	found := false
	for i, in := range k.Body {
		if in.Op != "BRA" && !strings.HasPrefix(in.Op, "BRA.") {
			continue
		}
		m := braRE.FindStringSubmatch(in.Text)
		if m == nil {
			continue
		}
		target, err := strconv.ParseInt(m[1], 16, 64)
		if err != nil || int(target) >= in.Addr { // not a backward branch: no loop
			continue
		}
		start, ok := at[int(target)]
		if !ok {
			continue
		}
		l := Loop{Lo: int(target), Hi: in.Addr, Instrs: k.Body[start : i+1]}
		for _, x := range l.Instrs {
			if strings.HasPrefix(x.Op, "HMMA") {
				l.HMMA++
			}
		}
		if !found || l.HMMA > best.HMMA || (l.HMMA == best.HMMA && len(l.Instrs) > len(best.Instrs)) {
			best, found = l, true
		}
	}
	return best, found
}

// Dump runs cuobjdump -sass for one architecture (sm_80, sm_90) of a library: the named kernels only
// (mangled names, as Functions lists them; the whole library is 200k lines and takes cuobjdump half a
// minute), or every kernel when none is named.
func Dump(lib, arch string, kernels ...string) (string, error) {
	args := []string{"-sass", "-arch", arch}
	if len(kernels) > 0 {
		args = append(args, "-fun", strings.Join(kernels, ","))
	}
	return cuobjdump(append(args, lib)...)
}

// Functions lists the kernels with SASS for arch in a library (cuobjdump -ltext, a listing of its
// sections that disassembles nothing).
func Functions(lib, arch string) ([]string, error) {
	out, err := cuobjdump("-ltext", lib)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// SASS text section 19 : x-_Z19attn_fwd_mma_kernelILi128EE….sm_80.elf.bin
		_, sec, ok := strings.Cut(line, " : x-")
		if name, ok2 := strings.CutSuffix(sec, "."+arch+".elf.bin"); ok && ok2 {
			names = append(names, name)
		}
	}
	return names, nil
}

func cuobjdump(args ...string) (string, error) {
	out, err := exec.Command("cuobjdump", args...).Output()
	if err != nil {
		what := "cuobjdump " + strings.Join(args, " ")
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("%s: %v: %s", what, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return string(out), nil
}
