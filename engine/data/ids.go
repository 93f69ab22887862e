// Package data reads and writes serl's JSONL files: token-id lines for the model's verification
// commands, and SeRL's problem records.
package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// maxLine bounds one JSONL line (a 1M-token sequence of 7-digit ids fits).
const maxLine = 16 << 20

// ReadIDs reads lines of {"ids":[...]} (blank lines skipped). Errors name the line.
func ReadIDs(r io.Reader) ([][]int32, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out [][]int32
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec struct {
			IDs *[]int32 `json:"ids"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if rec.IDs == nil {
			return nil, fmt.Errorf("line %d: missing field \"ids\"", line)
		}
		out = append(out, *rec.IDs)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("after line %d: %w", len(out), err)
	}
	return out, nil
}

// WriteFloats writes one line {"<key>":[...]} with float32 values printed in their shortest exact
// form, so a reader gets back the very values serl computed.
func WriteFloats(w io.Writer, key string, vals []float32) error {
	b := make([]byte, 0, 16*len(vals)+len(key)+8)
	b = append(b, `{"`...)
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat32(b, v)
	}
	b = append(b, "]}\n"...)
	_, err := w.Write(b)
	return err
}
