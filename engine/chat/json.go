package chat

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// filterToJSON is transformers' tojson filter:
//
//	json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
//
// Go maps have no insertion order, so their keys are always written sorted;
// dicts built inside the template keep their order.
func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	o := jsonOptions{keySep: ": "}
	names := []string{"ensure_ascii", "indent", "separators", "sort_keys"}
	if len(params.Args) > len(names) {
		return exec.AsValue(errors.New("tojson: too many arguments"))
	}
	args := map[string]*exec.Value{}
	for i, a := range params.Args {
		args[names[i]] = a
	}
	for k, a := range params.KwArgs {
		if _, dup := args[k]; dup {
			return exec.AsValue(fmt.Errorf("tojson: argument %q given twice", k))
		}
		args[k] = a
	}
	itemSep := ", "
	for k, a := range args {
		switch k {
		case "ensure_ascii":
			o.ascii = a.IsTrue()
		case "sort_keys":
			o.sortKeys = a.IsTrue()
		case "indent":
			switch {
			case a.IsNil():
			case a.IsInteger():
				o.indent, o.indented = strings.Repeat(" ", max(a.Integer(), 0)), true
			case a.IsString():
				o.indent, o.indented = a.String(), true
			default:
				return exec.AsValue(errors.New("tojson: indent must be an integer, a string or None"))
			}
		case "separators":
			if a.IsNil() {
				continue
			}
			seps, ok := stringPair(a.Interface())
			if !ok {
				return exec.AsValue(errors.New("tojson: separators must be a pair of strings"))
			}
			itemSep, o.keySep = seps[0], seps[1]
			o.sepsGiven = true
		default:
			return exec.AsValue(fmt.Errorf("tojson: unexpected argument %q", k))
		}
	}
	o.itemSep = itemSep
	if o.indented && !o.sepsGiven {
		o.itemSep = "," // json.dumps drops the space after "," when indenting
	}
	var b strings.Builder
	if err := o.encode(&b, reflect.ValueOf(in.Interface()), 0); err != nil {
		return exec.AsValue(fmt.Errorf("tojson: %w", err))
	}
	return exec.AsSafeValue(b.String())
}

func stringPair(x any) ([2]string, bool) {
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array || v.Len() != 2 {
		return [2]string{}, false
	}
	var out [2]string
	for i := range 2 {
		e := unwrap(v.Index(i))
		if e.Kind() != reflect.String {
			return [2]string{}, false
		}
		out[i] = e.String()
	}
	return out, true
}

type jsonOptions struct {
	ascii, sortKeys, indented, sepsGiven bool
	indent, itemSep, keySep              string
}

var (
	valuePtrType = reflect.TypeFor[*exec.Value]()
	dictPtrType  = reflect.TypeFor[*exec.Dict]()
)

// unwrap resolves interfaces and gonja's *Value wrappers.
func unwrap(v reflect.Value) reflect.Value {
	for v.IsValid() {
		switch {
		case v.Kind() == reflect.Interface:
			v = v.Elem()
		case v.Type() == valuePtrType:
			if v.IsNil() {
				return reflect.Value{}
			}
			v = reflect.ValueOf(v.Interface().(*exec.Value).Interface())
		default:
			return v
		}
	}
	return v
}

type jsonPair struct {
	key string
	val reflect.Value
}

func (o *jsonOptions) encode(b *strings.Builder, v reflect.Value, depth int) error {
	if depth > 100 {
		return errors.New("nesting too deep")
	}
	v = unwrap(v)
	if !v.IsValid() {
		b.WriteString("null")
		return nil
	}
	if v.Type() == dictPtrType {
		d := v.Interface().(*exec.Dict)
		if d == nil {
			b.WriteString("null")
			return nil
		}
		pairs := make([]jsonPair, 0, len(d.Pairs))
		for _, p := range d.Pairs {
			k, err := jsonKey(unwrap(reflect.ValueOf(p.Key)))
			if err != nil {
				return err
			}
			pairs = append(pairs, jsonPair{k, reflect.ValueOf(p.Value)})
		}
		return o.object(b, pairs, depth)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("null")
			return nil
		}
		return o.encode(b, v.Elem(), depth+1)
	case reflect.Bool:
		if v.Bool() {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString(pyFloat(v.Float()))
	case reflect.String:
		o.str(b, v.String())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			b.WriteString("null")
			return nil
		}
		if v.Len() == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			o.newline(b, depth+1)
			if err := o.encode(b, v.Index(i), depth+1); err != nil {
				return err
			}
		}
		o.newline(b, depth)
		b.WriteByte(']')
	case reflect.Map:
		if v.IsNil() {
			b.WriteString("null")
			return nil
		}
		pairs := make([]jsonPair, 0, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k, err := jsonKey(unwrap(iter.Key()))
			if err != nil {
				return err
			}
			pairs = append(pairs, jsonPair{k, iter.Value()})
		}
		sort.Slice(pairs, func(i, j int) bool { return pairs[i].key < pairs[j].key })
		return o.object(b, pairs, depth)
	default:
		return fmt.Errorf("object of type %s is not JSON serializable", v.Type())
	}
	return nil
}

func (o *jsonOptions) object(b *strings.Builder, pairs []jsonPair, depth int) error {
	if len(pairs) == 0 {
		b.WriteString("{}")
		return nil
	}
	if o.sortKeys {
		sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].key < pairs[j].key })
	}
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(o.itemSep)
		}
		o.newline(b, depth+1)
		o.str(b, p.key)
		b.WriteString(o.keySep)
		if err := o.encode(b, p.val, depth+1); err != nil {
			return err
		}
	}
	o.newline(b, depth)
	b.WriteByte('}')
	return nil
}

func (o *jsonOptions) newline(b *strings.Builder, depth int) {
	if o.indented {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat(o.indent, depth))
	}
}

// jsonKey converts a dict key as json.dumps does.
func jsonKey(k reflect.Value) (string, error) {
	if !k.IsValid() {
		return "null", nil
	}
	switch k.Kind() {
	case reflect.String:
		return k.String(), nil
	case reflect.Bool:
		if k.Bool() {
			return "true", nil
		}
		return "false", nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(k.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return pyFloat(k.Float()), nil
	}
	return "", fmt.Errorf("keys must be str, int, float, bool or None, not %s", k.Type())
}

// pyFloat is Python's float repr as json.dumps writes it.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsRune(s, '.') {
		s += ".0"
	}
	return s
}

// str writes a JSON string with json.dumps' escapes: the two-character
// escapes, \u00XX for other control characters, and with ensure_ascii
// \uXXXX (UTF-16 surrogate pairs above U+FFFF) for everything non-ASCII.
func (o *jsonOptions) str(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				b.WriteString(`\"`)
			case '\\':
				b.WriteString(`\\`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			default:
				if c < 0x20 {
					fmt.Fprintf(b, `\u%04x`, c)
				} else {
					b.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !o.ascii:
			b.WriteString(s[i : i+size])
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
		i += size
	}
	b.WriteByte('"')
}
