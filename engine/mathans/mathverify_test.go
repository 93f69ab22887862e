package mathans

import (
	"path/filepath"
	"strings"
	"testing"
)

type mvCase struct {
	Gold       string   `json:"gold"`
	Pred       string   `json:"pred"`
	Expected   int      `json:"expected"`
	MatchTypes []string `json:"match_types"`
}

// knownDisagreement is a Math-Verify case where serl's verdict differs from Math-Verify's, kept on
// purpose or not yet fixed. Line is the case's 1-based line in mathverify/cases.jsonl; Gold and Pred
// repeat the case so that a reordered or edited file cannot silently move the entry to another case.
type knownDisagreement struct {
	Line       int
	Gold, Pred string
	Why        string
}

// mathVerifyDisagreements is every case of Math-Verify's own suite that serl grades differently
// (121 of 122 agree). A new disagreement, or one that stops disagreeing, fails the test until this
// list is updated, so the checker's agreement cannot drift in either direction unnoticed.
var mathVerifyDisagreements = []knownDisagreement{
	{
		Line: 19, Gold: "$9$", Pred: "Answer \\( \n 9 \n \\)",
		Why: "Math-Verify treats \\( … \\) as inline math that may not span lines (like $ … $) and extracts " +
			"nothing; serl's findEnvs lets \\( … \\) span line breaks and extracts 9, so it grades 1 where " +
			"Math-Verify expects 0. Harmless for rewards: a model that writes its answer this way is right.",
	},
}

// TestMathVerifyCases grades Math-Verify's own test cases (gold via ParseGold, prediction via Extract,
// as Equivalent does) and requires serl to disagree on exactly the cases of mathVerifyDisagreements.
func TestMathVerifyCases(t *testing.T) {
	cases := readJSONL[mvCase](t, filepath.Join(sharedData(t), "mathverify", "cases.jsonl"))
	known := map[int]knownDisagreement{}
	for _, k := range mathVerifyDisagreements {
		if k.Line < 1 || k.Line > len(cases) {
			t.Fatalf("known disagreement at line %d: cases.jsonl has %d lines", k.Line, len(cases))
		}
		if c := cases[k.Line-1]; c.Gold != k.Gold || c.Pred != k.Pred {
			t.Fatalf("known disagreement at line %d names gold %q pred %q, but the file has gold %q pred %q",
				k.Line, k.Gold, k.Pred, c.Gold, c.Pred)
		}
		known[k.Line] = k
	}
	agree := 0
	for i, c := range cases {
		line := i + 1
		g, p := ParseGold(c.Gold), Extract(c.Pred)
		got := 0
		if Same(g, p) {
			got = 1
		}
		k, isKnown := known[line]
		if got == c.Expected {
			agree++
			if isKnown {
				t.Errorf("line %d now agrees with Math-Verify (expected %d): remove it from mathVerifyDisagreements (%s)",
					line, c.Expected, k.Why)
			}
			continue
		}
		if isKnown {
			continue
		}
		reason := "value comparison"
		switch {
		case !g.Valid() || !p.Valid():
			reason = "extraction failed"
		case c.Expected == 0:
			reason = "false positive"
		}
		t.Errorf("new disagreement at line %d (%s): expected %d got %d: gold %q [%s %q] pred %q [%s %q]",
			line, reason, c.Expected, got, trunc(c.Gold), g.Rule, trunc(g.Raw), trunc(c.Pred), p.Rule, trunc(p.Raw))
	}
	t.Logf("agreement %d/%d = %.1f%%", agree, len(cases), 100*float64(agree)/float64(len(cases)))
}

func trunc(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 90 {
		return s[:40] + " … " + s[len(s)-40:]
	}
	return s
}
