// Package evaluate measures a model on a labelled problem set as SeRL's evaluation does (docs/SERL.md
// §6, D20–D21): pass@1 from one greedy response and maj@K from K sampled responses,
// per difficulty level and overall. Every problem counts in every denominator: a response with no
// extractable answer is simply wrong.
package evaluate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/serl-go/serl/engine/mathans"
)

// Problem is one labelled problem.
type Problem struct {
	Problem  string `json:"problem"`
	Answer   string `json:"answer,omitempty"`   // gold label: bare ("3") or boxed ("\boxed{3}")
	Solution string `json:"solution,omitempty"` // gold taken from its last \boxed{} when Answer is empty
	Level    int    `json:"level,omitempty"`    // 0: unknown
}

// Gold is the parsed gold answer: the answer label (bare labels are LaTeX answers, docs/SERL.md D10),
// or, for MATH-Hard-style files without one, the boxed answer of the solution.
func (p Problem) Gold() mathans.Answer {
	if strings.TrimSpace(p.Answer) != "" {
		return mathans.ParseGold(p.Answer)
	}
	return mathans.ParseGold(p.Solution)
}

// rawProblem accepts the field spellings of the files SeRL evaluates on: MATH uses "problem" and a
// numeric or "Level N" level, ASDiv and College Math use "question".
type rawProblem struct {
	Problem  *string         `json:"problem"`
	Question *string         `json:"question"`
	Answer   json.RawMessage `json:"answer"`
	Solution string          `json:"solution"`
	Level    json.RawMessage `json:"level"`
}

// ReadJSONL reads one problem per line; blank lines are skipped. A line without problem text or
// without any gold (answer or solution) is an error naming the line, since it could not be scored.
func ReadJSONL(r io.Reader) ([]Problem, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	var out []Problem
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var rp rawProblem
		if err := json.Unmarshal(b, &rp); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		var p Problem
		switch {
		case rp.Problem != nil:
			p.Problem = *rp.Problem
		case rp.Question != nil:
			p.Problem = *rp.Question
		}
		if p.Problem == "" {
			return nil, fmt.Errorf("line %d: no \"problem\" or \"question\" text", line)
		}
		ans, err := scalarString(rp.Answer)
		if err != nil {
			return nil, fmt.Errorf("line %d: answer: %w", line, err)
		}
		p.Answer = ans
		p.Solution = rp.Solution
		if strings.TrimSpace(p.Answer) == "" && !strings.Contains(p.Solution, "boxed") {
			return nil, fmt.Errorf("line %d: no gold: neither \"answer\" nor a \\boxed{} in \"solution\"", line)
		}
		if p.Level, err = parseLevel(rp.Level); err != nil {
			return nil, fmt.Errorf("line %d: level: %w", line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadFile reads a JSONL problem file; a file without problems is an error, since every use of one
// (an evaluation, seeds, training data) needs at least one.
func ReadFile(path string) ([]Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps, err := ReadJSONL(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%s: no problems", path)
	}
	return ps, nil
}

// scalarString reads a JSON string or number (some sets store numeric answers as numbers).
func scalarString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("want a string or a number, got %s", raw)
	}
	return n.String(), nil
}

// parseLevel reads 3, "3" or "Level 3"; MATH's "Level ?" and a missing level are 0 (unknown).
func parseLevel(raw json.RawMessage) (int, error) {
	s, err := scalarString(raw)
	if err != nil || s == "" {
		return 0, err
	}
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "Level"))
	if s == "?" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s is not a level", raw)
	}
	return n, nil
}
