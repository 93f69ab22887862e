package reward

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/serl-go/serl/engine/mathans"
)

// gradeLine is one input line of `serl grade`.
type gradeLine struct {
	Gold *string `json:"gold"`
	Pred *string `json:"pred"`
}

// GradeLines reads JSONL lines {"gold": ..., "pred": ...} and writes one
// verdict per line, "1" when the gold label and the prediction (a bare
// answer or a response, mathans.ParseAnswer) are the same and "0"
// otherwise. Blank lines are skipped. A malformed line stops with an error
// naming its line number.
func GradeLines(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	bw := bufio.NewWriter(w)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		var g gradeLine
		if err := json.Unmarshal(b, &g); err != nil {
			return fmt.Errorf("grade: line %d: malformed JSON: %w", line, err)
		}
		if g.Gold == nil || g.Pred == nil {
			return fmt.Errorf("grade: line %d: need string fields \"gold\" and \"pred\"", line)
		}
		v := "0\n"
		if mathans.Same(mathans.ParseGold(*g.Gold), mathans.ParseAnswer(*g.Pred)) {
			v = "1\n"
		}
		if _, err := bw.WriteString(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("grade: line %d: %w", line+1, err)
	}
	return bw.Flush()
}
