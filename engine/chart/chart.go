// Package chart draws the PNG line charts of a run directory (reward, accuracy, KL, loss over steps)
// with the standard library and a bitmap font: no plotting framework in the engine.
package chart

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one named line.
type Series struct {
	Name string
	X, Y []float64
}

// Chart is a titled set of series over a shared x axis.
type Chart struct {
	Title, XLabel string
	Series        []Series
	Width, Height int // 0: 800 × 450
}

var palette = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}}

const (
	left, right, top, bottom = 70, 20, 30, 45
)

// Render draws the chart. Series with no finite points are skipped; an empty chart still renders axes.
func (c Chart) Render() *image.RGBA {
	w, h := c.Width, c.Height
	if w == 0 || h == 0 {
		w, h = 800, 450
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	x0, x1, y0, y1 := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			if i < len(s.Y) && finite(s.X[i]) && finite(s.Y[i]) {
				x0, x1 = math.Min(x0, s.X[i]), math.Max(x1, s.X[i])
				y0, y1 = math.Min(y0, s.Y[i]), math.Max(y1, s.Y[i])
			}
		}
	}
	if x0 > x1 {
		x0, x1, y0, y1 = 0, 1, 0, 1
	}
	if x1 == x0 {
		x1 = x0 + 1
	}
	if y1 == y0 {
		y0, y1 = y0-0.5, y1+0.5
	}
	pad := (y1 - y0) * 0.05
	y0, y1 = y0-pad, y1+pad
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	px := func(x float64) int { return left + int((x-x0)/(x1-x0)*pw+0.5) }
	py := func(y float64) int { return top + int((y1-y)/(y1-y0)*ph+0.5) }
	grey, black := color.RGBA{220, 220, 220, 255}, color.RGBA{0, 0, 0, 255}
	for i := 0; i <= 5; i++ {
		yv := y0 + (y1-y0)*float64(i)/5
		line(img, left, py(yv), w-right, py(yv), grey)
		text(img, 4, py(yv)+4, fmt.Sprintf("%.3g", yv), black)
		xv := x0 + (x1-x0)*float64(i)/5
		line(img, px(xv), top, px(xv), h-bottom, grey)
		text(img, px(xv)-10, h-bottom+16, fmt.Sprintf("%.4g", xv), black)
	}
	line(img, left, h-bottom, w-right, h-bottom, black)
	line(img, left, top, left, h-bottom, black)
	text(img, left, 18, c.Title, black)
	text(img, w/2-20, h-8, c.XLabel, black)
	for si, s := range c.Series {
		col := palette[si%len(palette)]
		prevOK := false
		var lx, ly int
		for i := range s.X {
			if i >= len(s.Y) || !finite(s.X[i]) || !finite(s.Y[i]) {
				prevOK = false
				continue
			}
			x, y := px(s.X[i]), py(s.Y[i])
			if prevOK {
				line(img, lx, ly, x, y, col)
			}
			fillRect(img, x-1, y-1, x+1, y+1, col)
			lx, ly, prevOK = x, y, true
		}
	}
	// The legend goes last, on a white box, so no line runs through its labels.
	if len(c.Series) > 0 {
		fillRect(img, w-right-155, top+2, w-right-2, top+6+16*len(c.Series), color.RGBA{255, 255, 255, 255})
	}
	for si, s := range c.Series {
		col := palette[si%len(palette)]
		fillRect(img, w-right-150, top+6+16*si, w-right-140, top+14+16*si, col)
		text(img, w-right-135, top+15+16*si, s.Name, black)
	}
	return img
}

// WritePNG renders the chart to path atomically.
func (c Chart) WritePNG(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(tmp)
	err = png.Encode(bw, c.Render())
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
