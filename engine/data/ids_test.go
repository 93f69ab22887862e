package data

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadIDs(t *testing.T) {
	got, err := ReadIDs(strings.NewReader("{\"ids\":[1,2,3]}\n\n{\"ids\":[]}\n"))
	require.NoError(t, err)
	require.Equal(t, [][]int32{{1, 2, 3}, {}}, got)
	for _, bad := range []string{`{"ids":[1,2`, `{"idz":[1]}`, `{}`, `{"ids":["a"]}`, `{"ids":[99999999999]}`, `[1,2]`} {
		_, err := ReadIDs(strings.NewReader("{\"ids\":[1]}\n" + bad + "\n"))
		require.Error(t, err, bad)
		require.Contains(t, err.Error(), "line 2", bad)
	}
}

func TestWriteFloats(t *testing.T) {
	var b bytes.Buffer
	vals := []float32{-0.1, 1e-30, -3.4028235e38, 0, float32(math.Inf(-1))}
	require.NoError(t, WriteFloats(&b, "logprobs", vals))
	var rec struct{ Logprobs []*float32 }
	require.NoError(t, json.Unmarshal(b.Bytes(), &rec))
	for i, v := range vals[:4] {
		require.Equal(t, v, *rec.Logprobs[i], "exact round trip")
	}
	require.Nil(t, rec.Logprobs[4])
}
