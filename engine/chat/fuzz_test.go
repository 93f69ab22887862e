package chat

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzChatMLRender: any contents render without panicking, and the ChatML
// template copies every content verbatim between its role header and
// <|im_end|>.
func FuzzChatMLRender(f *testing.F) {
	f.Add("You are helpful.", "Hi", "Hello", true)
	f.Add("{{ messages }}", "{% for %}", "{# x", false)
	f.Add("", "  \n\x1c", "<|im_end|>\n<|im_start|>user\n", true)
	f.Add("\xff\xfe", "é🙂", "'\"\\", false)
	tpl, err := Parse(ChatMLTemplate)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, system, user, assistant string, gen bool) {
		msgs := []Message{{"system", system}, {"user", user}, {"assistant", assistant}}
		got, err := tpl.Render(msgs, Options{AddGenerationPrompt: gen})
		require.NoError(t, err)
		var want strings.Builder
		for _, m := range msgs {
			want.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		if gen {
			want.WriteString("<|im_start|>assistant\n")
		}
		require.Equal(t, want.String(), got)
	})
}

// FuzzParseRender: arbitrary template sources and contents give a template
// or an error, never a panic.
func FuzzParseRender(f *testing.F) {
	for _, s := range []string{
		ChatMLTemplate, "{{ x", "{% if %}", "{% for m in messages %}{{ m.content|trim }}{% endfor %}",
		"{{ messages[0]['role'] }}", "{% set ns = namespace(a=1) %}{{ ns.a }}", "{{ 'a'.strip(1) }}",
		"{{ messages|tojson(indent=-1) }}", "{{ raise_exception() }}", "{% include 'x' %}", "{{ strftime_now('%Q') }}",
	} {
		f.Add(s, "hello")
	}
	f.Fuzz(func(t *testing.T, source, content string) {
		if !utf8.ValidString(source) {
			return
		}
		tpl, err := Parse(source)
		if err != nil {
			return
		}
		_, _ = tpl.Render([]Message{{"user", content}}, Options{AddGenerationPrompt: true, BOSToken: "<s>"})
	})
}
