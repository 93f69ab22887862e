package generate

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// A decode step of S sequences makes exactly these host↔device copies, whatever the model: the model's
// inputs go up — token ids, positions, cache slots, lengths (4S bytes each) and the block table
// (4·S·MaxBlocks) — then the sampler's per-row settings (temperature, top-p, presence penalty, top-k,
// step, ban flag: 4S each; seed and sequence id: 8S each), the stop ids when the request has any, and
// the token histories when a presence penalty needs them; the sampled tokens and their log-probs (4S
// each) come back. The logits never leave the device. Measured as the difference between generating
// k+1 and k tokens, which differ by exactly one decode step.
func TestDecodeStepTransfers(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, small)
	d := m.Device()
	const S = 4
	mb := int64(e.maxBlocks)
	base := kernels.Transfers{
		Uploads: 5 + 8, UploadBytes: 4*S*4 + 4*S*mb + 6*4*S + 2*8*S,
		Downloads: 2, DownloadBytes: 2 * 4 * S,
	}
	for _, c := range []struct {
		name   string
		params func(n int) Params
		extra  kernels.Transfers
	}{
		{"no stop ids", func(n int) Params { return sampled(3, n) }, kernels.Transfers{}},
		{"two stop ids", func(n int) Params {
			p := sampled(3, n)
			p.StopIDs, p.MinNewTokens = []int32{2, 5}, n // banned until the end, so no sequence stops early
			return p
		}, kernels.Transfers{Uploads: 1, UploadBytes: 2 * 4}},
		{"presence penalty", func(n int) Params {
			p := sampled(3, n)
			p.PresencePenalty = 0.5
			return p
		}, kernels.Transfers{Uploads: 2, UploadBytes: int64(4*S*e.sp.ldHist + 4*S)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := func(n int) kernels.Transfers {
				before := d.Transfers()
				out, err := e.Generate([]Request{{Prompt: prompt(1, 9, m.Config.Vocab), N: S, Params: c.params(n)}}, nil, nil)
				require.NoError(t, err)
				for _, s := range out[0] {
					require.Len(t, s.Tokens, n)
				}
				return d.Transfers().Sub(before)
			}
			want := base
			want.Uploads += c.extra.Uploads
			want.UploadBytes += c.extra.UploadBytes
			for k := 3; k < 6; k++ {
				require.Equal(t, want, run(k+1).Sub(run(k)), "decode step %d", k)
			}
			t.Logf("%s: %s per decode step of %d sequences", c.name, want, S)
		})
	}
}
