package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/internal/testenv"
	"github.com/stretchr/testify/require"
)

type greedyRef struct {
	Prompt       []int32   `json:"prompt"`
	Continuation []int32   `json:"continuation"`
	Margin       []float64 `json:"top2_margin"`
}

func argmax(row []float32) int32 {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return int32(best)
}

// Prefill plus paged decode reproduce, token for token, the argmax continuation PyTorch computed with a
// full forward pass and no cache. Blocks are handed out in scrambled order to exercise the table.
func TestGreedyMatchesFullForward(t *testing.T) {
	d := testDevice(t)
	for _, name := range []string{"qwen2_f32", "llama_f32", "llama_bf16"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			b, err := os.ReadFile(filepath.Join(dir, "greedy.json"))
			require.NoError(t, err)
			var g greedyRef
			require.NoError(t, json.Unmarshal(b, &g))
			m, err := Load(d, dir)
			require.NoError(t, err)
			defer m.Free()
			const bs, nBlocks = 4, 32
			kv, err := m.NewKVCache(nBlocks, bs)
			require.NoError(t, err)
			defer kv.Free()
			maxBlocks := (len(g.Prompt) + len(g.Continuation) + bs - 1) / bs
			ws, err := m.NewWorkspace(len(g.Prompt), 1, maxBlocks)
			require.NoError(t, err)
			defer ws.Free()
			table := make([]int32, maxBlocks)
			for i := range table {
				table[i] = int32((i*7 + 3) % nBlocks) // a permutation: 7 and 32 are coprime
			}
			slot := func(p int) int32 { return table[p/bs]*bs + int32(p%bs) }
			slots := make([]int32, len(g.Prompt))
			for i := range slots {
				slots[i] = slot(i)
			}
			require.NoError(t, m.Prefill(ws, kv, g.Prompt, []int{len(g.Prompt)}, slots))
			tok := argmax(testenv.Read[float32](t, ws.Logits(1)))
			for step, want := range g.Continuation {
				if g.Margin[step] > 1e-3 {
					require.Equal(t, want, tok, "step %d (margin %.2g)", step, g.Margin[step])
				}
				tok = want // follow the reference past a near-tie so later steps stay comparable
				p := int32(len(g.Prompt) + step)
				if step+1 == len(g.Continuation) {
					break
				}
				require.NoError(t, m.Decode(ws, kv, []int32{tok}, []int32{p}, []int32{slot(int(p))}, table, []int32{p + 1}))
				tok = argmax(testenv.Read[float32](t, ws.Logits(1)))
			}
		})
	}
}

// prefilledFixture loads the Qwen2 fixture, prefills two prompts of 3 tokens into a cache and returns
// a decode step of both, the next token each: decode() runs it.
func prefilledFixture(t *testing.T) (m *Model, decode func() error) {
	m, err := Load(testDevice(t), filepath.Join("testdata", "qwen2_f32"))
	require.NoError(t, err)
	t.Cleanup(m.Free)
	kv, err := m.NewKVCache(8, 16)
	require.NoError(t, err)
	t.Cleanup(kv.Free)
	ws, err := m.NewWorkspace(16, 2, 4)
	require.NoError(t, err)
	t.Cleanup(ws.Free)
	require.NoError(t, m.Prefill(ws, kv, []int32{1, 2, 3, 4, 5, 6}, []int{3, 3}, []int32{0, 1, 2, 16, 17, 18}))
	ids, pos, slots := []int32{7, 8}, []int32{3, 3}, []int32{3, 19}
	table := []int32{0, 2, 3, 4, 1, 5, 6, 7}
	lens := []int32{4, 4}
	return m, func() error { return m.Decode(ws, kv, ids, pos, slots, table, lens) }
}

// A decode step issues the fused ops: per layer one norm (the residual add fused in), the q product,
// k and v as one batched product, rope_append (biases, RoPE, cache append), decode attention, the
// output product, the MLP's norm with its residual add, gate and up as one batched product, SwiGLU and
// the down product — 10 where there were 19 — then the final norm (the last residual add fused in) and
// the head. On a GPU each is a launch in the step's graph, and at a decode batch most are bound by
// their launch, not their work.
func TestDecodeStepOps(t *testing.T) {
	m, decode := prefilledFixture(t)
	require.True(t, m.Config.QKVBias)
	d := m.dev
	d.SetProfiling(true)
	defer d.SetProfiling(false)
	require.NoError(t, decode())
	L := int64(m.Config.Layers)
	want := map[string]int64{"embedding_fwd": 1, "rmsnorm_fwd": 2*L + 1, "matmul": 5*L + 1, "rope_append": L,
		"decode_attention": L, "swiglu_fwd": L}
	got := map[string]int64{}
	for _, s := range d.Profile() {
		if s.Calls > 0 && s.Op != "copy" { // the copies upload the step's ids, positions, slots and tables
			got[s.Op] = s.Calls
		}
	}
	require.Equal(t, want, got)
}

// A decode step allocates nothing on the Go heap.
func TestDecodeAllocatesNothing(t *testing.T) {
	_, decode := prefilledFixture(t)
	allocs := testenv.AllocsPerRun(t, 10, func() {
		if err := decode(); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}
