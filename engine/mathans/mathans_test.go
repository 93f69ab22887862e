package mathans

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExtractRules(t *testing.T) {
	for _, c := range []struct {
		in   string
		rule Rule
		raw  string
	}{
		{`so $\boxed{\frac{1}{2}}$ and later \boxed{7}.`, RuleBoxed, "7"},
		{`nested \boxed{\frac{a}{\sqrt{b}}}`, RuleBoxed, `\frac{a}{\sqrt{b}}`},
		{`we get \boxed 5 apples`, RuleBoxed, "5"},
		{`\fbox{12}`, RuleBoxed, "12"},
		{`$\boxed{1}$ and $\boxed{2}$`, RuleBoxed, "1, 2"},
		{`\boxed{1} then we try again and the result is \boxed{2}`, RuleBoxed, "2"},
		{`The final answer is $x=3$. I hope it is correct.`, RuleFinalAnswer, "x=3"},
		{`Final Answer: the total is 12,000 dollars.`, RuleFinalAnswer, "12,000"},
		{`Answer: 42`, RuleAnswerColon, "42"},
		{`We have $a=2$ and so $b = 7$`, RuleLatexEnv, "b = 7"},
		{`Thus \[ y = \frac{3}{4} \]`, RuleLatexEnv, ` y = \frac{3}{4} `},
		{`The total is 3.5 kg`, RuleLastNumber, "3.5"},
		{`She paid $5 and then $7 more, so 12 in all`, RuleLastNumber, "12"},
		{`It rose by 28 %`, RuleLastNumber, "28%"},
		{`no answer here`, RuleNone, ""},
		{``, RuleNone, ""},
	} {
		a := Extract(c.in)
		assert.Equal(t, c.rule, a.Rule, "%q", c.in)
		assert.Equal(t, c.raw, a.Raw, "%q", c.in)
		assert.Equal(t, c.rule != RuleNone, a.Valid(), "%q", c.in)
	}
	assert.Equal(t, "boxed", RuleBoxed.String())
	assert.Equal(t, "none", RuleNone.String())
}

func TestEquivalentPairs(t *testing.T) {
	yes := [][2]string{
		{`\frac{1}{2}`, `0.5`}, {`\frac12`, `\dfrac{1}{2}`}, {`0.5`, `.5`}, {`3`, `3.0`}, {`5`, `x = 5`},
		{`\frac{\sqrt{3}}{3}`, `\frac{1}{\sqrt{3}}`}, {`2\sqrt{2}`, `\sqrt{8}`}, {`\pi/2`, `\frac{\pi}{2}`},
		{`3\pi`, `3 \pi`}, {`(x+1)^2`, `x^2+2x+1`}, {`2x+3`, `3+2x`}, {`y = 2x + 3`, `2x+3`},
		{`\left( 3, \frac{\pi}{2} \right)`, `(3,\pi/2)`}, {`[4,\infty)`, `[4, \infty)`}, {`(-\infty, 0]`, `(-\infty,0]`},
		{`(0,9) \cup (9,36)`, `(9,36)\cup(0,9)`}, {`\{1\pm\sqrt{5},-2\}`, `-2, 1+\sqrt5, 1-\sqrt5`},
		{`1 \pm \sqrt{19}`, `1+\sqrt{19}, 1-\sqrt{19}`}, {`3, 5, 7`, `7,5,3`}, {`\text{Evelyn}`, `\text{evelyn}`},
		{`90^\circ`, `90`}, {`90^{\circ}`, `90`}, {`50\%`, `50`}, {`50\%`, `0.5`}, {`\$32,\!348`, `32348`},
		{`10,\!080`, `10080`}, {`1\,000`, `1000`}, {`14{,}916`, `14916`}, {`7,425,000`, `7425000`},
		{`1\frac{4}{5}`, `\frac{9}{5}`}, {`137 \frac{1}{2}`, `137.5`}, {`5.4 \text{ cents}`, `5.4`},
		{`864 \mbox{ inches}^2`, `864`}, {`\frac{270}7\text{ degrees}`, `\frac{270}{7}`}, {`\text{(C)}`, `C`},
		{`\sqrt[3]{8}`, `2`}, {`2^{10}`, `1024`}, {`\binom{5}{2}`, `10`}, {`5!`, `120`}, {`|-3|`, `3`},
		{`\sin^2 x + \cos^2 x`, `1`}, {`\tan^2(y)+1`, `\sec^2(y)`}, {`0.333333`, `\frac13`}, {`204_5`, `204_{5}`},
		{`x \in [-2,7]`, `[-2,7]`}, {`0 < x < 1`, `(0,1)`}, {`x \ge 5`, `x >= 5`}, {`x < 1`, `-x > -1`},
		{`\begin{pmatrix} 1 \\ 2 \end{pmatrix}`, `\begin{bmatrix} 1 \\ 2 \end{bmatrix}`}, {`6 - 5i`, `-5i+6`},
		{`\frac{14}{3}`, `4.666667`}, {`k = 1`, `1`}, {`\mathbb{R}`, `(-\infty,\infty)`},
	}
	for _, p := range yes {
		g, q := ParseGold(p[0]), ParseGold(p[1])
		assert.True(t, Same(g, q), "%q ≡ %q", p[0], p[1])
		assert.True(t, Same(q, g), "%q ≡ %q (reversed)", p[1], p[0])
		assert.True(t, Equivalent(p[0], "The answer is $\\boxed{"+p[1]+"}$."), "Equivalent(%q, boxed %q)", p[0], p[1])
	}
	no := [][2]string{
		{`\frac{1}{2}`, `0.55`}, {`3`, `-3`}, {`\sqrt{2}`, `1.41`}, {`\pi`, `3.14`}, {`x^2`, `y^2`},
		{`2x+3`, `2x+4`}, {`(1,2)`, `(2,1)`}, {`(1,2)`, `1,2`}, {`[0,1)`, `[0,1]`}, {`(0,9)`, `[0,9)`},
		{`\text{even}`, `\text{odd}`}, {`x > 5`, `x < 5`}, {`x \ge 5`, `x > 5`}, {`1112112_3`, `1112122_3`},
		{`12345678901234567`, `12345678901234568`}, {`\frac{1}{1000000}`, `\frac{1}{1000001}`}, {`x+y`, `x-y`},
		{`a+3z = 0`, `0`}, {`3, 5, 7`, `3, 5`}, {`90`, `91^\circ`}, {`1+2i`, `1-2i`}, {`10^{100000}`, `10^{100000}+1`},
		{`50\%`, `5`}, {`\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}`, `\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}`},
	}
	for _, p := range no {
		g, q := ParseGold(p[0]), ParseGold(p[1])
		assert.False(t, Same(g, q), "%q ≢ %q", p[0], p[1])
		assert.False(t, Same(q, g), "%q ≢ %q (reversed)", p[1], p[0])
	}
}

func TestInvalidAnswersNeverMatch(t *testing.T) {
	none := Extract("I don't know.")
	assert.False(t, none.Valid())
	assert.False(t, Same(none, none), "invalid answers are equal to nothing, themselves included")
	assert.False(t, Equivalent("", "$\\boxed{}$"))
	assert.False(t, Equivalent("5", ""))
}

func TestBoundedWork(t *testing.T) {
	// Huge exponents, deep nesting and long inputs are refused, not computed.
	assert.False(t, Equivalent(`10^{100000}`, `\boxed{10^{100001}}`))
	deep := strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000)
	a := ParseGold(deep)
	assert.Empty(t, a.alts)
	long := strings.Repeat("1+", 100000) + "1"
	assert.False(t, Equivalent("100001", `\boxed{`+long+`}`))
	assert.True(t, Equivalent("3", strings.Repeat("filler text ", 20000)+`\boxed{3}`))
}

func TestGoldFormsAgree(t *testing.T) {
	// Bare, boxed and $-wrapped labels are the same gold (docs/SERL.md D10).
	for _, s := range []string{`\frac{\pi}{2}`, `(-3,4)`, `\sqrt{2}`, `\text{even}`, `[4,\infty)`, `9:24`, `2,-2`} {
		b := ParseGold(s)
		assert.True(t, b.Valid(), s)
		assert.Equal(t, RuleBare, b.Rule, s)
		assert.True(t, Same(b, ParseGold(`\boxed{`+s+`}`)), s)
		assert.True(t, Same(b, ParseGold(`$`+s+`$`)), s)
	}
}

// BenchmarkSame measures equivalence checks on real answer pairs (MATH-500
// golds against each other, parsed once).
func BenchmarkSame(b *testing.B) {
	rows := readJSONL[mathRow](b, sharedData(b)+"/math/math500.jsonl")
	ans := make([]Answer, len(rows))
	for i, r := range rows {
		ans[i] = ParseGold(r.Answer)
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		x, y := ans[i%len(ans)], ans[(i*7+3)%len(ans)]
		if Same(x, y) {
			n++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

// BenchmarkEquivalent includes parsing both sides, as GradeLines does.
func BenchmarkEquivalent(b *testing.B) {
	rows := readJSONL[mathRow](b, sharedData(b)+"/math/seed500.jsonl")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := rows[i%len(rows)]
		Equivalent(r.Answer, r.Solution)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

// A prediction given bare is read like a gold label; one inside a response is extracted as a reward
// extracts it, prose keeping its last number.
func TestParseAnswerBareOrResponse(t *testing.T) {
	for _, c := range []struct {
		gold, pred string
		same       bool
	}{
		{`\frac12`, `\frac12`, true},
		{`\frac{1}{2}`, `\frac12`, true},
		{`\frac12`, `1/2`, true},
		{`\frac12`, `0.5`, true},
		{`(1,2)`, `(1,2)`, true},
		{`x+1`, `x + 1`, true},
		{`3\sqrt{2}`, `3\sqrt{2}`, true},
		{`3\sqrt{2}`, `2`, false},
		{`5`, `so we get 5 apples`, true},
		{`5`, `The answer is $\boxed{5}$, not 6`, true},
		{`\frac12`, `\boxed{0.5}`, true},
		{`2`, `\frac12`, false},
		{`2`, ``, false},
	} {
		require.Equal(t, c.same, Same(ParseGold(c.gold), ParseAnswer(c.pred)), "gold %q pred %q", c.gold, c.pred)
	}
	// Rewards extract from a response only: a bare LaTeX answer there is no answer.
	require.False(t, Equivalent(`\frac12`, `\frac12`))
}
