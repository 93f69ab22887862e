package pretrain

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Point is one (x, y) sample of a curve.
type Point struct{ X, Y float64 }

var (
	chartGrid   = color.RGBA{225, 225, 225, 255}
	chartAxis   = color.RGBA{60, 60, 60, 255}
	chartLoss   = color.RGBA{31, 119, 180, 255} // left axis: training loss, 0 at the bottom
	chartPass   = color.RGBA{214, 39, 40, 255}  // right axis: pass@1 from 0 to 1
	chartW      = 900
	chartH      = 420
	chartMargin = 30
)

// WriteChart draws the loss curve (blue, scaled from 0 to its maximum) and the pass@1 curve (red,
// scaled from 0 to 1) against the step, with grid lines at tenths, as a PNG. Only the standard library
// is used, so there is no text: the numbers are in metrics.jsonl.
func WriteChart(path string, loss, pass []Point) error {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	x0, y0 := chartMargin, chartH-chartMargin
	x1, y1 := chartW-chartMargin, chartMargin
	for k := 0; k <= 10; k++ {
		y := y0 + (y1-y0)*k/10
		x := x0 + (x1-x0)*k/10
		line(img, x0, y, x1, y, chartGrid)
		line(img, x, y0, x, y1, chartGrid)
	}
	line(img, x0, y0, x1, y0, chartAxis)
	line(img, x0, y0, x0, y1, chartAxis)
	line(img, x1, y0, x1, y1, chartAxis)
	maxX, maxLoss := 1.0, 0.0
	for _, p := range append(append([]Point(nil), loss...), pass...) {
		maxX = max(maxX, p.X)
	}
	for _, p := range loss {
		if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
			maxLoss = max(maxLoss, p.Y)
		}
	}
	if maxLoss == 0 {
		maxLoss = 1
	}
	plot := func(ps []Point, top float64, c color.RGBA) {
		px := func(p Point) (int, int) {
			y := min(max(p.Y/top, 0), 1)
			return x0 + int(math.Round(p.X/maxX*float64(x1-x0))), y0 + int(math.Round(y*float64(y1-y0)))
		}
		for i := range ps {
			xa, ya := px(ps[i])
			if len(ps) <= 200 { // dots only where they stay readable
				dot(img, xa, ya, c)
			}
			if i > 0 {
				xb, yb := px(ps[i-1])
				line(img, xb, yb, xa, ya, c)
			}
		}
	}
	plot(loss, maxLoss, chartLoss)
	plot(pass, 1, chartPass)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	return writeAtomic(path, buf.Bytes())
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := sign(xb-xa), sign(yb-ya)
	err := dx + dy
	for {
		img.SetRGBA(xa, ya, c)
		if xa == xb && ya == yb {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			xa += sx
		}
		if e2 <= dx {
			err += dx
			ya += sy
		}
	}
}

func dot(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			img.SetRGBA(x+dx, y+dy, c)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
