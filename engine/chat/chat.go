// Package chat renders Hugging Face chat templates (the Jinja `chat_template`
// of tokenizer_config.json) the way transformers' apply_chat_template does:
// jinja2 with trim_blocks and lstrip_blocks, the loopcontrols extension,
// transformers' own tojson filter and the raise_exception and strftime_now
// globals. The engine is gonja; where gonja's built-ins differ from Python's,
// this package registers its own versions (see env.go). testdata/golden.json
// holds jinja2's renders (testdata/gen_golden.py) that the tests match byte for
// byte.
//
// Not supported, or known to differ from jinja2: transformers'
// {% generation %} tag (assistant-token masks) fails to parse; tools and
// documents are always none; {{ none }} prints "" (jinja2: "None");
// arithmetic edge cases (division by zero, negative string repeat) give other
// results or errors; tojson writes Go map keys sorted, having no insertion
// order to keep.
package chat

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string
	Content string
}

// Options are the template variables besides the messages.
type Options struct {
	// AddGenerationPrompt appends the header of the assistant turn.
	AddGenerationPrompt bool
	// BOSToken and EOSToken are defined for the template only when
	// non-empty, as transformers passes only the special tokens a tokenizer
	// has (Qwen2.5 has no BOS token).
	BOSToken, EOSToken string
	// DateString, in "26 Jul 2024" style, is defined only when non-empty;
	// otherwise templates such as Llama-3.2's call strftime_now("%d %b %Y")
	// and print today's date.
	DateString string
	// Extra holds further template variables (template kwargs). Names
	// that collide with the ones above are rejected.
	Extra map[string]any
}

// Template is a parsed chat template.
type Template interface {
	Render(messages []Message, opts Options) (string, error)
}

// ChatMLTemplate is serl's own chat template: ChatML turns as in Qwen2.5's
// template, without tools and without a default system prompt. It accepts an
// optional leading system message followed by user and assistant turns.
//
//go:embed chatml.jinja
var ChatMLTemplate string

// RaiseError is the error of a template that called raise_exception.
type RaiseError struct {
	Template string
	Message  string
}

func (e *RaiseError) Error() string {
	return fmt.Sprintf("chat template %s: raise_exception: %s", e.Template, e.Message)
}

// now is the clock behind strftime_now; tests pin it.
var now = time.Now

// reserved are the variables Render sets itself; transformers would fail
// with "got multiple values for keyword argument" on a duplicate.
var reserved = map[string]bool{
	"messages": true, "tools": true, "documents": true, "add_generation_prompt": true,
	"bos_token": true, "eos_token": true, "date_string": true,
	"raise_exception": true, "strftime_now": true,
}

type template struct {
	name string
	tpl  *exec.Template
}

// Parse parses a chat template's source. Errors name it "<inline>";
// use ParseNamed to name it after its file.
func Parse(source string) (Template, error) {
	return ParseNamed("<inline>", source)
}

// ParseNamed parses a chat template, naming it in errors.
func ParseNamed(name, source string) (t Template, err error) {
	// gonja's lexer and parser index and type-assert freely and can panic on
	// malformed input; templates come from downloaded model files, so a panic
	// here must become an error rather than take the process down.
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("chat template %s: parse: internal template engine error: %v", name, r)
		}
	}()
	tpl, err := exec.NewTemplate(name, newConfig(), singleLoader{name: name, source: source}, environment)
	if err != nil {
		// gonja's message quotes the entire source before the cause; keep
		// only the cause, which carries the line and column.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("chat template %s: parse: %w", name, err)
	}
	return &template{name: name, tpl: tpl}, nil
}

// Render renders the conversation. Jinja-looking text inside contents is
// data: it is never parsed as template code.
func (t *template) Render(messages []Message, opts Options) (out string, err error) {
	// As in Parse: gonja's evaluator can panic on template code it does not
	// expect; that is a failure of this template, reported as an error.
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template %s: render: internal template engine error: %v", t.name, r)
		}
	}()
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	var raised *string
	vars := map[string]any{
		"messages":              msgs,
		"tools":                 nil,
		"documents":             nil,
		"add_generation_prompt": opts.AddGenerationPrompt,
		"raise_exception": func(_ *exec.Evaluator, params *exec.VarArgs) (*exec.Value, error) {
			msg := ""
			if len(params.Args) > 0 {
				msg = params.Args[0].String()
			}
			raised = &msg
			return nil, errors.New(msg)
		},
		"strftime_now": func(_ *exec.Evaluator, params *exec.VarArgs) (*exec.Value, error) {
			if len(params.Args) != 1 || !params.Args[0].IsString() || len(params.KwArgs) != 0 {
				return nil, errors.New("strftime_now takes one string argument")
			}
			s, err := strftime(now(), params.Args[0].String())
			if err != nil {
				return nil, err
			}
			return exec.AsValue(s), nil
		},
	}
	if opts.BOSToken != "" {
		vars["bos_token"] = opts.BOSToken
	}
	if opts.EOSToken != "" {
		vars["eos_token"] = opts.EOSToken
	}
	if opts.DateString != "" {
		vars["date_string"] = opts.DateString
	}
	for k, v := range opts.Extra {
		if reserved[k] {
			return "", fmt.Errorf("chat template %s: Options.Extra sets %q, which Render sets itself", t.name, k)
		}
		vars[k] = v
	}
	var b strings.Builder
	if err := t.tpl.Execute(&b, exec.NewContext(vars)); err != nil {
		if raised != nil {
			return "", &RaiseError{Template: t.name, Message: *raised}
		}
		return "", fmt.Errorf("chat template %s: render: %w", t.name, err)
	}
	return b.String(), nil
}

// singleLoader serves the one template and nothing else: as with
// transformers' from_string, a chat template cannot include or import.
type singleLoader struct{ name, source string }

func (l singleLoader) Read(path string) (io.Reader, error) {
	if path != l.name {
		return nil, fmt.Errorf("chat templates cannot load other templates (%q)", path)
	}
	return strings.NewReader(l.source), nil
}

func (l singleLoader) Resolve(path string) (string, error) {
	if path != l.name {
		return "", fmt.Errorf("chat templates cannot load other templates (%q)", path)
	}
	return path, nil
}

func (l singleLoader) Inherit(string) (loaders.Loader, error) { return l, nil }
