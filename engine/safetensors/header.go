package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// entry is a validated tensor of a header.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	numel      int
	begin, end int64 // relative to the data region
}

// parseHeader parses and validates a header against a data region of dataLen
// bytes. It walks JSON tokens rather than unmarshalling into a map because
// encoding/json silently keeps the last of duplicate keys, and a file whose
// tensors depend on which duplicate a reader picks must be rejected.
func parseHeader(hdr []byte, dataLen int64) ([]entry, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("header must be a JSON object, found %s", describe(tok))
	}
	var (
		entries []entry
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not valid JSON: unexpected %s", describe(tok))
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("duplicate key %q in header", key)
		}
		seen[key] = true
		if key == "__metadata__" {
			if meta, err = parseMetadata(dec); err != nil {
				return nil, nil, fmt.Errorf("__metadata__: %w", err)
			}
			continue
		}
		e, err := parseEntry(dec)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		e.name = key
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, fmt.Errorf("header has trailing bytes after the JSON object: %v", err)
		}
		return nil, nil, fmt.Errorf("header has trailing %s after the JSON object", describe(tok))
	}
	if err := checkLayout(entries, dataLen); err != nil {
		return nil, nil, err
	}
	if meta == nil {
		meta = map[string]string{}
	}
	return entries, meta, nil
}

// checkLayout verifies sizes and bounds, then that the tensors tile
// [0, dataLen) with no gap and no overlap, and sorts entries by offset.
func checkLayout(entries []entry, dataLen int64) error {
	for i := range entries {
		e := &entries[i]
		if e.begin > e.end {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] end before they begin", e.name, e.begin, e.end)
		}
		if e.end > dataLen {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] run past the data region (%d bytes)", e.name, e.begin, e.end, dataLen)
		}
		if e.end-e.begin != int64(e.numel)*int64(e.dtype.Size()) {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] hold %d bytes, but %s%v needs %d",
				e.name, e.begin, e.end, e.end-e.begin, e.dtype, e.shape, int64(e.numel)*int64(e.dtype.Size()))
		}
	}
	// Stable, with empty tensors first at a shared offset, so that a
	// zero-length tensor sitting at another's start is not an overlap.
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].begin != entries[j].begin {
			return entries[i].begin < entries[j].begin
		}
		return entries[i].end < entries[j].end
	})
	var cursor int64
	prev := ""
	for _, e := range entries {
		switch {
		case e.begin < cursor:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d", e.name, e.begin, e.end, prev, cursor)
		case e.begin > cursor:
			if prev == "" {
				return fmt.Errorf("tensor %q: gap of %d bytes at the start of the data region", e.name, e.begin-cursor)
			}
			return fmt.Errorf("tensor %q: gap of %d bytes after tensor %q", e.name, e.begin-cursor, prev)
		}
		prev, cursor = e.name, e.end
	}
	if cursor != dataLen {
		return fmt.Errorf("data region has %d bytes after the last tensor that no tensor covers", dataLen-cursor)
	}
	return nil
}

func parseMetadata(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if tok == nil {
		return map[string]string{}, nil // null, which the reference reader accepts
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("must be an object of strings, found %s", describe(tok))
	}
	meta := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("not valid JSON: unexpected %s", describe(tok))
		}
		if _, dup := meta[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %v", err)
		}
		val, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("value of %q must be a string, found %s", key, describe(tok))
		}
		meta[key] = val
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	return meta, nil
}

func parseEntry(dec *json.Decoder) (entry, error) {
	var e entry
	tok, err := dec.Token()
	if err != nil {
		return e, fmt.Errorf("not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return e, fmt.Errorf("entry must be an object, found %s", describe(tok))
	}
	var shape, offsets []uint64
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, fmt.Errorf("not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return e, fmt.Errorf("not valid JSON: unexpected %s", describe(tok))
		}
		switch key {
		case "dtype":
			if haveDType {
				return e, errors.New(`duplicate field "dtype"`)
			}
			haveDType = true
			tok, err := dec.Token()
			if err != nil {
				return e, fmt.Errorf("dtype: not valid JSON: %v", err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, fmt.Errorf("dtype must be a string, found %s", describe(tok))
			}
			e.dtype = DType(s)
			if e.dtype.Size() == 0 {
				return e, fmt.Errorf("unknown dtype %q", s)
			}
		case "shape":
			if haveShape {
				return e, errors.New(`duplicate field "shape"`)
			}
			haveShape = true
			if shape, err = parseUints(dec, "shape"); err != nil {
				return e, err
			}
		case "data_offsets":
			if haveOffsets {
				return e, errors.New(`duplicate field "data_offsets"`)
			}
			haveOffsets = true
			if offsets, err = parseUints(dec, "data_offsets"); err != nil {
				return e, err
			}
			if len(offsets) != 2 {
				return e, fmt.Errorf("data_offsets must be [begin, end], found %d numbers", len(offsets))
			}
		default:
			return e, fmt.Errorf("unknown field %q", key)
		}
	}
	if _, err := dec.Token(); err != nil {
		return e, fmt.Errorf("not valid JSON: %v", err)
	}
	switch {
	case !haveDType:
		return e, errors.New(`missing field "dtype"`)
	case !haveShape:
		return e, errors.New(`missing field "shape"`)
	case !haveOffsets:
		return e, errors.New(`missing field "data_offsets"`)
	}
	e.shape = make([]int, len(shape))
	for i, d := range shape {
		if d > math.MaxInt64 {
			return e, fmt.Errorf("shape[%d] = %d is too large", i, d)
		}
		e.shape[i] = int(d)
	}
	numel, _, err := numBytes(e.dtype, e.shape)
	if err != nil {
		return e, err
	}
	e.numel = int(numel)
	for i, o := range offsets {
		if o > math.MaxInt64 {
			return e, fmt.Errorf("data_offsets[%d] = %d is too large", i, o)
		}
	}
	e.begin, e.end = int64(offsets[0]), int64(offsets[1])
	return e, nil
}

// parseUints reads a JSON array of non-negative integers.
func parseUints(dec *json.Decoder, field string) ([]uint64, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", field, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("%s must be an array of integers, found %s", field, describe(tok))
	}
	var out []uint64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: not valid JSON: %v", field, err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s[%d] must be an integer, found %s", field, len(out), describe(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			if len(num) > 0 && num[0] == '-' {
				return nil, fmt.Errorf("%s[%d] is %s: must be non-negative", field, len(out), num)
			}
			return nil, fmt.Errorf("%s[%d] is %s: must be a non-negative integer below 2^64", field, len(out), num)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", field, err)
	}
	return out, nil
}

// describe names a JSON token for error messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch v {
		case '{', '}':
			return "an object"
		default:
			return "an array"
		}
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	}
	return fmt.Sprintf("%v", tok)
}

// checkDuplicateKeys walks any JSON document and reports the first object
// with a repeated key, for files (the shard index) decoded with
// encoding/json, which would otherwise keep the last duplicate silently.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			if key, ok := tok.(string); ok {
				if stack[n-1].keys[key] {
					return fmt.Errorf("duplicate key %q", key)
				}
				stack[n-1].keys[key] = true
				stack[n-1].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, wantKey: true, keys: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			valueDone()
		default:
			valueDone()
		}
	}
}
