package arith

import (
	"strings"
	"testing"
	"time"
)

// FuzzSolve: Solve never panics, answers in bounded time, and an accepted
// text gives the same answer twice.
func FuzzSolve(f *testing.F) {
	for lvl := 1; lvl <= Levels; lvl++ {
		for s := uint64(0); s < 6; s++ {
			f.Add(Generate(s, lvl).Problem)
		}
	}
	f.Add("Ben has 4 boxes. Each box holds 3 bags, and each bag holds 6 marbles. How many marbles does Ben have?")
	f.Add("If Tom has 9 pens and Tom loses 2 pens, how many pens does Tom have?")
	f.Add("What is ((((1 + 2) * 3) - 4) / 5)?")
	f.Add("Each box has 2 boxes. Tom has 3 boxes. How many boxes does Tom have?")
	f.Add(strings.Repeat("Tom has 5 apples, and ", 30) + "how many apples does Tom have?")
	f.Fuzz(func(t *testing.T, text string) {
		start := time.Now()
		a, ok := Solve(text)
		if d := time.Since(start); d > time.Second { // generous: fuzzing shares two cores; real cost is ~0.1 ms, worst seen ~3 ms
			t.Fatalf("Solve took %v on %q", d, text)
		}
		b, ok2 := Solve(text)
		if a != b || ok != ok2 {
			t.Fatalf("Solve not deterministic on %q: %q %v, %q %v", text, a, ok, b, ok2)
		}
		if !ok && a != "" {
			t.Fatalf("refusal with an answer %q", a)
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Generate(uint64(i), 1+i%Levels)
	}
}

func BenchmarkSolve(b *testing.B) {
	var ps []string
	for i := range 500 {
		ps = append(ps, Generate(uint64(i), 1+i%Levels).Problem)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := Solve(ps[i%len(ps)]); !ok {
			b.Fatal("unsolved")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "problems/s")
}

func BenchmarkSolveRefuse(b *testing.B) {
	ps := readMATH(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		Solve(ps[i%len(ps)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "texts/s")
}
