package chart

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWritePNG(t *testing.T) {
	c := Chart{Title: "reward", XLabel: "step", Series: []Series{
		{Name: "mean reward", X: []float64{1, 2, 3, 4}, Y: []float64{0.2, 0.4, math.NaN(), 0.5}},
		{Name: "share", X: []float64{1, 2, 3, 4}, Y: []float64{0.5, 0.5, 0.6, 0.7}},
	}}
	p := filepath.Join(t.TempDir(), "r.png")
	require.NoError(t, c.WritePNG(p))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, 800, img.Bounds().Dx())
	// The first series' colour appears: the line was drawn.
	found := false
	for y := 0; y < 450 && !found; y++ {
		for x := 0; x < 800; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 == 31 && g>>8 == 119 && b>>8 == 180 {
				found = true
				break
			}
		}
	}
	require.True(t, found)
	require.NoError(t, Chart{Title: "empty"}.WritePNG(p), "an empty chart still renders")
}
