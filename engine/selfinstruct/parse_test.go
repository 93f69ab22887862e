package selfinstruct

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The worked example of docs/SERL.md §2.4, whose official outcome was
// verified by running the official code.
const workedCompletion = "Here are some new questions:\n\n" +
	"9. If $f(x) = 3x^2 - 2x + 1$, what is the value of $f(-2)$?\n" +
	"10. A bakery sells 250 loaves ... How many loaves in 7 days?\n" +
	"11. Draw a graph of $y=x^2$ and find its vertex.\n" +
	"12. Find x.\n" +
	"13. Simplify $\\sqrt{48}$ ... where A and B are integers.\n\nLet me know if you need more."

func TestWorkedExampleOfficialCapitalize(t *testing.T) {
	cands := ParseCompletion(workedCompletion, CapitalizePython)
	require.Len(t, cands, 5)
	assert.Equal(t, []Candidate{
		{Text: "If $f(x) = 3x^2 - 2x + 1$, what is the value of $f(-2)$?", Reason: Accepted, Match: -1},
		{Text: "A bakery sells 250 loaves ... how many loaves in 7 days?", Reason: Accepted, Match: -1},
		{Text: "Draw a graph of $y=x^2$ and find its vertex.", Reason: Keyword, Match: -1},
		{Text: "Find x.", Reason: TooShort, Match: -1},
		{Text: "Simplify $\\sqrt{48}$ ... where a and b are integers. let me know if you need more.", Reason: Accepted, Match: -1},
	}, cands)
}

func TestWorkedExampleFixedCapitalize(t *testing.T) {
	cands := ParseCompletion(workedCompletion, CapitalizeFirst)
	var got []string
	for _, c := range cands {
		if c.Reason == Accepted {
			got = append(got, c.Text)
		}
	}
	assert.Equal(t, []string{
		"If $f(x) = 3x^2 - 2x + 1$, what is the value of $f(-2)$?",
		"A bakery sells 250 loaves ... How many loaves in 7 days?",
		"Simplify $\\sqrt{48}$ ... where A and B are integers. Let me know if you need more.",
	}, got)
}

func TestExtractQuestions(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"no numbers", "What is 2+2?", nil},
		{"intro ignored", "Sure!\n1. First one here\n2. Second", []string{"First one here", "Second"}},
		{"unnumbered first question lost", "What is 2+2?\n2. What is 3+3?", []string{"What is 3+3?"}},
		{"digits-dot in intro starts a bogus item", "There are 3. apples\n1. Q", []string{"apples", "Q"}},
		{"sub-list splits the question", "1. Consider the steps:\n1. add 2\n2. double it\n2. Next", []string{"Consider the steps:", "add 2", "double it", "Next"}},
		{"trailing chatter glued to last item", "1. A\n2. B\n\nHope this helps!", []string{"A", "B\n\nHope this helps!"}},
		{"trailing newline", "1. a b\n", []string{"a b"}},
		// $ also holds before the final "\n"; after strip() the result is the
		// same as if it held only at the end, and the scan must not loop.
		{"trailing newlines", "1. a\n\n", []string{"a"}},
		{"empty last item before final newline", "1. a\n2.\n", []string{"a", ""}},
		// \s+ is greedy: an empty item eats the newline, so the next number
		// becomes part of its text.
		{"empty item swallows the next number", "1. \n2. x y", []string{"2. x y"}},
		{"number at the very end", "1. a\n2. ", []string{"a", ""}},
		{"digits-dot without whitespace is no item", "1.No space\n2. Yes", []string{"Yes"}},
		{"no split without whitespace after dot", "1. a\n2.b", []string{"a\n2.b"}},
		{"decimal is not an item", "1.5 is a number. 2. Foo", []string{"Foo"}},
		{"mid-line numbers do not split", "1. Compute 2. 5 times 3.\n2. Next", []string{"Compute 2. 5 times 3.", "Next"}},
		{"split needs newline right before the digits", "1. a \n 2. b", []string{"a \n 2. b"}},
		{"CRLF", "1. a\r\n2. b\r\n", []string{"a", "b"}},
		{"blank line between items", "1. a\n\n2. b", []string{"a", "b"}},
		{"whitespace may be a newline", "1.\nfoo\n2.\tbar", []string{"foo", "bar"}},
		{"Arabic-Indic digits are \\d", "\u0661\u0662.\u00a0What is x?", []string{"What is x?"}},
		{"Unicode digit in lookahead", "1. a\n\u0662. b", []string{"a", "b"}},
		{"superscript two is not \\d", "1. a\n\u00b2. b", []string{"a\n\u00b2. b"}},
		{"ideographic space is \\s", "1.\u3000a\n2.\u2003b", []string{"a", "b"}},
		{"U+001C is \\s in Python", "1.\x1ca\x1c\n2.\x1fb", []string{"a", "b"}},
		{"zero-width space is not \\s", "1.\u200ba", nil},
		{"long digit run", strings.Repeat("7", 50) + ". x\n" + strings.Repeat("8", 50) + "y", []string{"x\n" + strings.Repeat("8", 50) + "y"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, ExtractQuestions(c.in))
		})
	}
}

func TestClean(t *testing.T) {
	cases := []struct {
		in, first, python string
	}{
		{"  how  many\n\tA's? ", "How many A's?", "How many a's?"},
		{"ß is sharp", "Ss is sharp", "Ss is sharp"}, // full title mapping of the first char
		{"x \u0130 y", "X \u0130 y", "X i\u0307 y"},  // U+0130 lower-cases to two code points
		{"aΣ ΣΣa Σ.", "AΣ ΣΣa Σ.", "Aς σσa σ."},      // final sigma needs a cased letter before and none after
		{"\\Delta and \\Gamma", "\\Delta and \\Gamma", "\\delta and \\gamma"},
		{"", "", ""},
		{"\u00a0\x1c", "", ""},
	}
	for _, c := range cases {
		assert.Equal(t, c.first, Clean(c.in, CapitalizeFirst), "first: %q", c.in)
		assert.Equal(t, c.python, Clean(c.in, CapitalizePython), "python: %q", c.in)
	}
}

func TestCheckRules(t *testing.T) {
	long := strings.TrimSpace(strings.Repeat("word ", 151))
	cases := []struct {
		in   string
		want Reason
	}{
		{"", Empty},
		{"Find the value.", TooShort},
		{"Find the value now.", Accepted},
		{"one two three\u00a0four", Accepted}, // NBSP separates words in str.split()
		{strings.TrimSpace(strings.Repeat("word ", 150)), Accepted},
		{long, TooLong},
		{"Look at the image below carefully.", Keyword},
		{"Look at the IMAGES below carefully.", Keyword},
		{"Use the graph, then answer it.", Keyword},
		{"Plot the points and find the area.", Keyword},
		{"Then go to the next step please.", Keyword},
		{"Then go  to the next step please.", Accepted},   // the keyword has exactly one space
		{"Find the profile of this curve now.", Accepted}, // "file" inside a word
		{"Compute the mapping of x to y.", Accepted},
		{"The file_name variable is here.", Accepted},  // '_' is a word character
		{"The filé is here and now.", Accepted},        // é is a word character: no \b after "fil"... nor a match
		{"The map\u00e9 thing is here now.", Accepted}, // é after "map" is a word character
		{"The map\u0301 thing is here now.", Keyword},  // a combining mark is not a word character in re
		{"The \u0130mage is shown here now.", Keyword}, // re.IGNORECASE folds U+0130 with i
		{"The gra\u017fph is no keyword.", Accepted},
		{"The ima\u017fe thing is not here.", Accepted},
		{"Count all the pictures in it.", Keyword},
		{"How many maps, files and draws?", Keyword},
		{"Write a program that adds numbers.", Program},
		{"Write a programme that adds numbers.", Program}, // prefix test only
		{"write a program that adds numbers.", Accepted},  // only the capitalised prefix is checked
		{"$x$ is a number, find it.", Punctuation},
		{"(a) Find the sum of it.", Punctuation},
		{"\\frac{1}{2} of what number is 3?", Punctuation},
		{"Éric has three apples today.", NonASCII},
		{"\u00a0Eric has three apples today.", NonASCII}, // Clean strips this; CheckRules does not
	}
	for _, c := range cases {
		assert.Equal(t, c.want, CheckRules(c.in), "%q", c.in)
	}
}

func TestReasonString(t *testing.T) {
	want := []string{"Accepted", "Empty", "TooShort", "TooLong", "Keyword", "Program", "Punctuation", "NonASCII", "Similar"}
	for r := Reason(0); r < NumReasons; r++ {
		assert.Equal(t, want[r], r.String())
	}
	assert.Equal(t, "Reason(42)", Reason(42).String())
}
