package chat

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/parser"
)

// environment is gonja's built-in environment with the Python-divergent
// pieces replaced. It owns copies of the filter and method sets, so gonja's
// package-level defaults (which other code may use) stay untouched.
var environment = newEnvironment()

func newConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true      // transformers: trim_blocks=True
	c.LeftStripBlocks = true // transformers: lstrip_blocks=True
	return c
}

func newEnvironment() *exec.Environment {
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	// gonja's trim is Go's TrimSpace (a different whitespace set from
	// Python's str.strip, and no positional chars); its tojson is
	// encoding/json (HTML escaping, no separators/sort_keys, Go float
	// format) where transformers uses json.dumps(ensure_ascii=False).
	must(filters.Replace("trim", filterTrim))
	must(filters.Replace("tojson", filterToJSON))

	m := builtins.Methods
	return &exec.Environment{
		Context:           exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables),
		Filters:           filters,
		Tests:             exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests),
		ControlStructures: exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).Update(builtins.ControlStructures),
		Methods: exec.Methods{
			Bool: m.Bool, Int: m.Int, Float: m.Float, Dict: m.Dict, List: m.List,
			Str: strMethods(m.Str),
		},
	}
}

func must(err error) {
	if err != nil {
		panic("chat: building the template environment: " + err.Error())
	}
}

// pyStrMethods are the Python str methods; gonja's MethodSet cannot be
// listed or edited, so the set is rebuilt from these names.
var pyStrMethods = []string{
	"capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
	"format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
	"islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
	"lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
	"rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
	"swapcase", "title", "translate", "upper", "zfill",
}

func strMethods(base *exec.MethodSet[string]) *exec.MethodSet[string] {
	methods := map[string]exec.Method[string]{}
	for _, name := range pyStrMethods {
		if fn, ok := base.Get(name); ok {
			methods[name] = fn
		}
	}
	// gonja's strip family defaults to stripping spaces only (lstrip,
	// rstrip) and its split defaults to sep=" "; Python's defaults are
	// "any whitespace".
	methods["strip"] = stripMethod(pyStrip)
	methods["lstrip"] = stripMethod(pyLStrip)
	methods["rstrip"] = stripMethod(pyRStrip)
	methods["split"] = splitMethod
	// gonja's replace requires count; Python's defaults to -1 (all).
	methods["replace"] = replaceMethod
	// gonja's startswith/endswith answer True for "".endswith("?").
	methods["startswith"] = affixMethod("startswith", strings.HasPrefix)
	methods["endswith"] = affixMethod("endswith", strings.HasSuffix)
	return exec.NewMethodSet(methods)
}

func stripMethod(strip func(s string, chars *string) string) exec.Method[string] {
	return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		chars, err := optionalChars(args, "chars")
		if err != nil {
			return nil, err
		}
		return strip(self, chars), nil
	}
}

// optionalChars reads Python's (chars=None) argument.
func optionalChars(args *exec.VarArgs, name string) (*string, error) {
	var v *exec.Value
	switch {
	case len(args.Args) > 1 || len(args.KwArgs) > 1 || (len(args.Args) == 1 && len(args.KwArgs) == 1):
		return nil, errors.New("takes at most 1 argument")
	case len(args.Args) == 1:
		v = args.Args[0]
	case len(args.KwArgs) == 1:
		var ok bool
		if v, ok = args.KwArgs[name]; !ok {
			return nil, fmt.Errorf("unexpected keyword argument (only %q)", name)
		}
	default:
		return nil, nil
	}
	if v.IsNil() {
		return nil, nil
	}
	if !v.IsString() {
		return nil, fmt.Errorf("%s must be a string or None", name)
	}
	s := v.String()
	return &s, nil
}

func splitMethod(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
	var sep *exec.Value
	maxsplit := -1
	for i, a := range args.Args {
		switch i {
		case 0:
			sep = a
		case 1:
			if !a.IsInteger() {
				return nil, errors.New("split: maxsplit must be an integer")
			}
			maxsplit = a.Integer()
		default:
			return nil, errors.New("split takes at most 2 arguments")
		}
	}
	for k, a := range args.KwArgs {
		switch k {
		case "sep":
			sep = a
		case "maxsplit":
			if !a.IsInteger() {
				return nil, errors.New("split: maxsplit must be an integer")
			}
			maxsplit = a.Integer()
		default:
			return nil, fmt.Errorf("split: unexpected keyword argument %q", k)
		}
	}
	var parts []string
	switch {
	case sep == nil || sep.IsNil():
		parts = pySplitWhitespace(self, maxsplit)
	case !sep.IsString():
		return nil, errors.New("split: sep must be a string or None")
	case sep.String() == "":
		return nil, errors.New("split: empty separator")
	default:
		n := -1
		if maxsplit >= 0 {
			n = maxsplit + 1
		}
		parts = strings.SplitN(self, sep.String(), n)
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

// isPySpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the information separators U+001C..U+001F.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ', 0x85, 0xa0, 0x1680,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

func stripSet(chars *string) func(rune) bool {
	if chars == nil {
		return isPySpace
	}
	set := *chars
	return func(r rune) bool { return r != utf8.RuneError && strings.ContainsRune(set, r) }
}

func pyStrip(s string, chars *string) string  { return strings.TrimFunc(s, stripSet(chars)) }
func pyLStrip(s string, chars *string) string { return strings.TrimLeftFunc(s, stripSet(chars)) }
func pyRStrip(s string, chars *string) string { return strings.TrimRightFunc(s, stripSet(chars)) }

// pySplitWhitespace is Python's str.split(None, maxsplit).
func pySplitWhitespace(s string, maxsplit int) []string {
	var out []string
	for {
		s = strings.TrimLeftFunc(s, isPySpace)
		if s == "" {
			return out
		}
		if maxsplit >= 0 && len(out) == maxsplit {
			return append(out, s)
		}
		end := strings.IndexFunc(s, isPySpace)
		if end < 0 {
			return append(out, s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}

// filterTrim is jinja2's do_trim: str(value).strip(chars).
func filterTrim(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	chars, err := optionalChars(params, "chars")
	if err != nil {
		return exec.AsValue(fmt.Errorf("trim: %w", err))
	}
	return exec.AsValue(pyStrip(in.String(), chars))
}

func replaceMethod(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
	if len(args.KwArgs) != 0 || len(args.Args) < 2 || len(args.Args) > 3 {
		return nil, errors.New("replace takes 2 or 3 positional arguments")
	}
	if !args.Args[0].IsString() || !args.Args[1].IsString() {
		return nil, errors.New("replace: old and new must be strings")
	}
	count := -1
	if len(args.Args) == 3 {
		if !args.Args[2].IsInteger() {
			return nil, errors.New("replace: count must be an integer")
		}
		count = args.Args[2].Integer()
	}
	old, repl := args.Args[0].String(), args.Args[1].String()
	if old == "" {
		// Python inserts new around every character, counting code points.
		var b strings.Builder
		n := 0
		for i := 0; i < len(self); {
			if count >= 0 && n >= count {
				b.WriteString(self[i:])
				return b.String(), nil
			}
			_, size := utf8.DecodeRuneInString(self[i:])
			b.WriteString(repl)
			b.WriteString(self[i : i+size])
			i += size
			n++
		}
		if count < 0 || n < count {
			b.WriteString(repl)
		}
		return b.String(), nil
	}
	return strings.Replace(self, old, repl, count), nil
}

// affixMethod is Python's str.startswith / str.endswith(affix[, start[, end]])
// where affix is a string or a tuple (list) of strings and start/end are
// code-point slice bounds.
func affixMethod(name string, has func(s, affix string) bool) exec.Method[string] {
	return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.KwArgs) != 0 || len(args.Args) < 1 || len(args.Args) > 3 {
			return nil, fmt.Errorf("%s takes 1 to 3 positional arguments", name)
		}
		var affixes []string
		if a := args.Args[0]; a.IsString() {
			affixes = []string{a.String()}
		} else if a.IsList() {
			list, ok := a.ToGoSimpleType(false).([]any)
			if !ok {
				return nil, fmt.Errorf("%s: first argument must be a string or a tuple of strings", name)
			}
			for _, e := range list {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("%s: tuple entries must be strings", name)
				}
				affixes = append(affixes, s)
			}
		} else {
			return nil, fmt.Errorf("%s: first argument must be a string or a tuple of strings", name)
		}
		sub := self
		if len(args.Args) > 1 {
			runes := []rune(self)
			n := len(runes)
			start, end := 0, n
			bounds := []*int{&start, &end}
			for i, a := range args.Args[1:] {
				if a.IsNil() {
					continue
				}
				if !a.IsInteger() {
					return nil, fmt.Errorf("%s: slice indices must be integers or None", name)
				}
				*bounds[i] = a.Integer()
				if *bounds[i] < 0 {
					*bounds[i] = max(*bounds[i]+n, 0)
				}
			}
			if start > n {
				return false, nil // Python: even "" does not match past the end
			}
			end = min(end, n)
			sub = ""
			if start < end {
				sub = string(runes[start:end])
			}
		}
		for _, a := range affixes {
			if has(sub, a) {
				return true, nil
			}
		}
		return false, nil
	}
}
