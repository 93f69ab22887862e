package mathans

import (
	"testing"
	"time"
)

var fuzzSeeds = []string{
	`The final answer is $\boxed{\frac{14}{3}}$.`,
	`\boxed{\left( 3, \frac{\pi}{2} \right)}`,
	`$x \in [-2,7]$`, `(-\infty, -3] \cup [2, \infty)`, `\{1\pm\sqrt{5},-2\}`,
	`\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}`, `x^2+2x+1`, `10^{100000}`, `2^{2^{2^{2^{2}}}}`,
	`\sqrt[3]{-8}`, `50\%`, `7,425,000`, `1,22`, `Answer: 3 hours`, `\boxed{1} and \boxed{2}`,
	`\frac{\frac{\frac{1}{2}}{3}}{4}`, `((((((((((1))))))))))`, `0 < x \le 5`, `y = 2x + 3`,
	`\text{(C)}`, `204_5`, `\sin^2 x + \cos^2 x`, `100!`, `\binom{10}{3}`, `|x-1|`, `$$`, `\boxed{`,
	`\\frac{1}{2}`, "\x0crac12", `$1 = \zzz = x = 0$`, `9:24`, `0.\overline{3}`,
}

// checkAnswer asserts the invariants every parse must keep.
func checkAnswer(t *testing.T, a Answer) {
	if a.Valid() && !Same(a, a) && a.norm == "" {
		t.Fatalf("valid answer %q not Same as itself", a.Raw)
	}
}

// timed fails when f is slow or never returns, so a hang is reported with
// its input instead of stalling the fuzzer.
func timed(t *testing.T, what string, f func()) {
	// Wall-clock limits are loose: fuzz workers share a loaded machine.
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s", what)
	}
}

func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a Answer
		timed(t, "Extract", func() { a = Extract(s) })
		checkAnswer(t, a)
		if a.Rule == RuleNone && a.Valid() {
			t.Fatalf("RuleNone answer is valid")
		}
	})
}

func FuzzParseGold(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a Answer
		timed(t, "ParseGold", func() { a = ParseGold(s) })
		checkAnswer(t, a)
	})
}

func FuzzEquivalent(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(s, fuzzSeeds[(i+1)%len(fuzzSeeds)])
		f.Add(s, `\boxed{`+s+`}`)
	}
	f.Fuzz(func(t *testing.T, gold, pred string) {
		timed(t, "Equivalent", func() {
			g, p := ParseGold(gold), Extract(pred)
			if Same(g, p) != Same(p, g) {
				t.Fatalf("Same not symmetric for %q / %q", gold, pred)
			}
			Equivalent(gold, pred)
		})
	})
}
