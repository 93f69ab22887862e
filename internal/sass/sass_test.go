package sass

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serl-go/serl/loader"
	"github.com/stretchr/testify/require"
)

// A kernel of cuobjdump's shape: a prologue, an outer loop (0x0040-0x00b0) with an inner one (0x0060-
// 0x0090) holding both HMMA, a predicated forward branch, and a second kernel with a loop and no HMMA.
const sample = `
	code for sm_90
		Function : _Z3fooPf
	.headerflags	@"EF_CUDA_TEXMODE_UNIFIED"
        /*0000*/                   MOV R1, c[0x0][0x28] ;                  /* 0x00000a0000017a02 */
        /*0010*/                   S2R R0, SR_TID.X ;                      /* 0x0000000000007919 */
        /*0020*/                   ISETP.GE.AND P0, PT, R0, 0x20, PT ;     /* 0x000000200000780c */
        /*0030*/              @P0 BRA 0xb0 ;                               /* 0x0000007000000947 */
        /*0040*/                   LDS.128 R4, [R2] ;                      /* 0x000000000204 */
        /*0050*/                   IADD3 R2, R2, 0x10, RZ ;                /* 0x000000100202 */
        /*0060*/                   HMMA.16816.F32.BF16 R8, R4, R6, R8 ;    /* 0x00000006040c */
        /*0070*/                   HMMA.16816.F32.BF16 R12, R4, R7, R12 ;  /* 0x00000007040c */
        /*0080*/              @!P1 FFMA R9, R9, R3, RZ ;                   /* 0x00000003090c */
        /*0090*/              @P2 BRA 0x60 ;                               /* 0x0000000000000947 */
        /*00a0*/                   ISETP.NE.AND P3, PT, R0, RZ, PT ;       /* 0x000000000000780c */
        /*00b0*/              @P3 BRA 0x40 ;                               /* 0x0000000000000947 */
        /*00c0*/                   EXIT ;                                  /* 0x000000000000794d */
		..........
		Function : _Z3barv
        /*0000*/                   MOV R1, RZ ;                            /* 0x00000a0000017a02 */
        /*0010*/                   IADD3 R1, R1, 0x1, RZ ;                 /* 0x0000000101017810 */
        /*0020*/                   BRA 0x10 ;                              /* 0x0000000000000947 */
`

func TestParseAndHottestLoop(t *testing.T) {
	ks := Parse(sample)
	require.Len(t, ks, 2)
	require.Equal(t, "_Z3fooPf", ks[0].Name)
	require.Len(t, ks[0].Body, 13)
	require.Equal(t, Instr{Addr: 0x80, Op: "FFMA", Text: "FFMA R9, R9, R3, RZ"}, ks[0].Body[8], "predicate dropped")
	l, ok := ks[0].HottestLoop()
	require.True(t, ok)
	// both loops hold the two HMMA; the outer is longer
	require.Equal(t, [2]int{0x40, 0xb0}, [2]int{l.Lo, l.Hi})
	require.Equal(t, 2, l.HMMA)
	require.Len(t, l.Instrs, 8)
	require.Equal(t, 4.0, l.PerHMMA())
	require.Equal(t, []OpCount{{"BRA", 2}, {"HMMA", 2}, {"FFMA", 1}, {"IADD3", 1}, {"ISETP", 1}, {"LDS", 1}}, l.Mix())
	l, ok = ks[1].HottestLoop()
	require.True(t, ok)
	require.Equal(t, 0, l.HMMA)
	require.Equal(t, 0.0, l.PerHMMA())
	require.Len(t, l.Instrs, 2)
	_, ok = Kernel{Name: "straight", Body: ks[0].Body[:3]}.HottestLoop()
	require.False(t, ok, "no backward branch, no loop")
}

// The tensor-core attention kernels' hottest loops, instructions per HMMA as Debian's nvcc 11.8 compiles
// them (tools/sassloops; 2026-12-07), each allowed 3% above: a change that makes a loop issue more
// around its mma fails here, on every build that compiles csrc/cuda, with no GPU. Keys are the mangled
// names up to the parameters; a kernel renamed or gone fails too, so the table follows the code.
var perHMMA = map[string]map[string]float64{
	"sm_90": {
		"_Z19attn_fwd_mma_kernelILi64EE":       616.0 / 64,
		"_Z19attn_fwd_mma_kernelILi128EE":      777.0 / 128,
		"_Z24attn_bwd_dkdv_mma_kernelILi64EE":  843.0 / 128,
		"_Z24attn_bwd_dkdv_mma_kernelILi128EE": 482.0 / 64,
		"_Z22attn_bwd_dq_mma_kernelILi64EE":    650.0 / 96,
		"_Z22attn_bwd_dq_mma_kernelILi128EE":   366.0 / 48,
	},
	"sm_80": {
		"_Z19attn_fwd_mma_kernelILi64EE":       580.0 / 64,
		"_Z19attn_fwd_mma_kernelILi128EE":      708.0 / 128,
		"_Z24attn_bwd_dkdv_mma_kernelILi64EE":  820.0 / 128,
		"_Z24attn_bwd_dkdv_mma_kernelILi128EE": 435.0 / 64,
		"_Z22attn_bwd_dq_mma_kernelILi64EE":    580.0 / 96,
		"_Z22attn_bwd_dq_mma_kernelILi128EE":   325.0 / 48,
	},
}

const (
	perHMMASlack = 1.03
	nvccRelease  = "11.8"
)

func TestAttentionLoopsPerHMMA(t *testing.T) {
	root := loader.RepoRoot()
	require.NotEmpty(t, root, "not inside the serl repository")
	lib := filepath.Join(root, "build", "libserl_cuda.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("skipped: no CUDA library (%v): ./build.sh builds it where nvcc exists", err)
	}
	if _, err := exec.LookPath("cuobjdump"); err != nil {
		t.Skip("skipped: no cuobjdump (it comes with nvcc: nvidia-cuda-toolkit)")
	}
	// The counts are one compiler's: another nvcc schedules otherwise (CI installs Debian's 11.8).
	if v, err := exec.Command("nvcc", "--version").Output(); err != nil || !strings.Contains(string(v), "release "+nvccRelease+",") {
		t.Skipf("skipped: the counts are nvcc %s's; this nvcc: %q (%v)", nvccRelease, strings.TrimSpace(string(v)), err)
	}
	for arch, want := range perHMMA {
		t.Run(arch, func(t *testing.T) {
			names, err := Functions(lib, arch)
			require.NoError(t, err)
			var mma []string
			for _, n := range names {
				for key := range want {
					if strings.HasPrefix(n, key) {
						mma = append(mma, n)
					}
				}
			}
			require.NotEmpty(t, mma, "%s: no attention mma kernel among %d in %s", arch, len(names), lib)
			text, err := Dump(lib, arch, mma...)
			require.NoError(t, err)
			seen := map[string]bool{}
			for _, k := range Parse(text) {
				for key, ceil := range want {
					if !strings.HasPrefix(k.Name, key) {
						continue
					}
					seen[key] = true
					l, ok := k.HottestLoop()
					require.True(t, ok, "%s: no loop", k.Name)
					require.NotZero(t, l.HMMA, "%s: its hottest loop has no HMMA", k.Name)
					require.LessOrEqual(t, l.PerHMMA(), ceil*perHMMASlack,
						"%s %s: %d instructions for %d HMMA in loop %#x-%#x (%.2f a mma, held to %.2f × %g): %v",
						arch, k.Name, len(l.Instrs), l.HMMA, l.Lo, l.Hi, l.PerHMMA(), ceil, perHMMASlack, l.Mix())
				}
			}
			for key := range want {
				require.True(t, seen[key], "%s: no kernel %s… in %s (renamed or gone? update perHMMA)", arch, key, lib)
			}
		})
	}
}
