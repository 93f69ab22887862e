package chat

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseErrorsNameTemplateAndPosition(t *testing.T) {
	for src, want := range map[string]string{
		"{{ x":                      "Line: 1 Col: 5",
		"a\n\n {{ 'x' + }}":         "Line: 3 Col: 11",
		"line1\nline2 {% endfor %}": "Line: 2 Col: 10",
		"{% for m in messages %}":   "expected tag else or endfor",
	} {
		_, err := ParseNamed("t.jinja", src)
		require.Error(t, err, src)
		assert.Contains(t, err.Error(), "chat template t.jinja: parse: ", src)
		assert.Contains(t, err.Error(), want, src)
	}
	// gonja's own message quotes the whole source; only the cause is kept.
	_, err := Parse("SOURCE-MARKER {% if %}")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SOURCE-MARKER")
	assert.Contains(t, err.Error(), "chat template <inline>")
}

func TestRaiseExceptionMessageSurfaces(t *testing.T) {
	tpl, err := ParseNamed("strict", "ok {{ raise_exception('bad role: ' + messages[0].role) }} never")
	require.NoError(t, err)
	out, err := tpl.Render([]Message{{"robot", "x"}}, Options{})
	assert.Empty(t, out)
	var re *RaiseError
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, RaiseError{Template: "strict", Message: "bad role: robot"}, *re)
	assert.EqualError(t, err, "chat template strict: raise_exception: bad role: robot")
}

// gonja panics on some expressions (integer modulo by zero, negative string
// repeat); Render must turn that into an error naming the template.
func TestEnginePanicsBecomeErrors(t *testing.T) {
	for _, src := range []string{"{{ 1 % 0 }}", "{{ 'x' * -1 }}"} {
		tpl, err := ParseNamed("boom.jinja", src)
		require.NoError(t, err)
		var out string
		require.NotPanics(t, func() { out, err = tpl.Render(nil, Options{}) }, src)
		assert.Empty(t, out)
		require.Error(t, err, src)
		assert.Contains(t, err.Error(), "chat template boom.jinja: render: internal template engine error", src)
	}
}

func TestTemplatesCannotLoadOthers(t *testing.T) {
	tpl, err := Parse("{% include 'other.jinja' %}")
	require.NoError(t, err)
	_, err = tpl.Render(nil, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot load other templates")
}

func TestOptionsVariables(t *testing.T) {
	tpl, err := Parse("{{ bos_token is defined }} {{ eos_token is defined }} {{ date_string is defined }}" +
		" {{ tools is none }} {{ add_generation_prompt }} {{ bos_token }}{{ eos_token }}{{ date_string }} {{ foo }}")
	require.NoError(t, err)
	out, err := tpl.Render(nil, Options{})
	require.NoError(t, err)
	assert.Equal(t, "False False False True False  ", out)
	out, err = tpl.Render(nil, Options{AddGenerationPrompt: true, BOSToken: "<s>", EOSToken: "</s>",
		DateString: "26 Jul 2024", Extra: map[string]any{"foo": 7}})
	require.NoError(t, err)
	assert.Equal(t, "True True True True True <s></s>26 Jul 2024 7", out)

	for _, k := range []string{"messages", "bos_token", "date_string", "add_generation_prompt", "tools"} {
		_, err = tpl.Render(nil, Options{Extra: map[string]any{k: "x"}})
		require.Error(t, err, k)
		assert.Contains(t, err.Error(), k)
	}
}

// Llama-3.2 prints today's date unless date_string is given.
func TestLlamaDateDefaultsToToday(t *testing.T) {
	pinClock(t, "2024-12-01T23:59:59")
	tpl, err := Parse(readFile(t, "testdata/llama3.2-instruct.jinja"))
	require.NoError(t, err)
	out, err := tpl.Render([]Message{{"user", "hi"}}, Options{BOSToken: "<|begin_of_text|>"})
	require.NoError(t, err)
	assert.Contains(t, out, "Today Date: 01 Dec 2024\n")
	out, err = tpl.Render([]Message{{"user", "hi"}}, Options{DateString: "26 Jul 2024"})
	require.NoError(t, err)
	assert.Contains(t, out, "Today Date: 26 Jul 2024\n")
}

func TestStrftime(t *testing.T) {
	// Expected values from Python: datetime(2025, 3, 7, 9, 5, 3).strftime(f).
	tm := time.Date(2025, 3, 7, 9, 5, 3, 0, time.UTC)
	for f, want := range map[string]string{
		"%d %b %Y":          "07 Mar 2025",
		"%A %B %e %j %y":    "Friday March  7 066 25",
		"%a %H:%M:%S %p %I": "Fri 09:05:03 AM 09",
		"%-d/%-m %F %T %%":  "7/3 2025-03-07 09:05:03 %",
		"%h":                "Mar",
	} {
		got, err := strftime(tm, f)
		require.NoError(t, err, f)
		assert.Equal(t, want, got, f)
	}
	pm, err := strftime(time.Date(2025, 12, 31, 0, 30, 0, 0, time.UTC), "%I %p %j")
	require.NoError(t, err)
	assert.Equal(t, "12 AM 365", pm)
	for _, f := range []string{"%Q", "abc%", "%-"} {
		_, err := strftime(tm, f)
		assert.Error(t, err, f)
	}
}
