package generate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A cancelled generation stops at the next decoding step with ctx's error and leaves the engine whole:
// the same requests then give what a fresh engine gives.
func TestGenerateContextCancel(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	var reqs []Request
	for i := 0; i < 6; i++ {
		reqs = append(reqs, Request{Prompt: prompt(i, 9+i, m.Config.Vocab), N: 3, Params: sampled(uint64(i), 40)})
	}
	e := newEngine(t, m, small)
	ctx, cancel := context.WithCancel(context.Background())
	tokens := 0
	_, err := e.GenerateContext(ctx, reqs, nil, func(_, _ int, _ int32) {
		if tokens++; tokens == 25 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, tokens, 6*3*40, "stopped before the end")
	require.Equal(t, small.NumBlocks-len(e.padBlocks), e.pool.available(), "every block given back (but the padding rows')")

	again, err := e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	fresh, err := newEngine(t, m, small).Generate(reqs, nil, nil)
	require.NoError(t, err)
	require.Equal(t, fresh, again)
}

// byteTok decodes ids below n as one letter each; other ids are not tokens, as the padded rows of a
// model's vocabulary beyond its tokenizer's.
type byteTok struct{ n int32 }

func (b byteTok) Decode(ids []int32, _ bool) (string, error) {
	var s strings.Builder
	for _, id := range ids {
		if id < 0 || id >= b.n {
			return "", errors.New("not a token")
		}
		s.WriteByte(byte('a' + id%26))
	}
	return s.String(), nil
}

// A sampled id the tokenizer lacks is marked in the text instead of emptying it.
func TestDecodeTextMarksUnknownIDs(t *testing.T) {
	tok := byteTok{n: 10}
	for _, c := range []struct {
		ids  []int32
		want string
	}{
		{[]int32{0, 1, 2}, "abc"},
		{[]int32{0, 12, 2}, "a[id 12: not a token]c"},
		{[]int32{40}, "[id 40: not a token]"},
		{[]int32{1, 40, 41}, "b[id 40: not a token][id 41: not a token]"},
		{nil, ""},
	} {
		require.Equal(t, c.want, decodeText(tok, c.ids), fmt.Sprint(c.ids))
	}
	// Through the engine: a tokenizer of 3 tokens, and every sample of 16 draws holds some other id.
	m := loadFixture(t, "qwen2_f32")
	out, err := newEngine(t, m, small).Generate([]Request{{Prompt: prompt(1, 8, m.Config.Vocab), N: 2,
		Params: Params{MaxNewTokens: 16, Temperature: 1, Seed: 5, StopIDs: []int32{}}}}, byteTok{n: 3}, nil)
	require.NoError(t, err)
	for _, s := range out[0] {
		require.Contains(t, s.Text, ": not a token]")
	}
}
