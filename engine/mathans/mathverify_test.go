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

// TestMathVerifyCases measures agreement with Math-Verify's own test cases
// (gold via ParseGold, prediction via Extract, as Equivalent does) and fails
// below 95%.
func TestMathVerifyCases(t *testing.T) {
	cases := readJSONL[mvCase](t, filepath.Join(sharedData(t), "mathverify", "cases.jsonl"))
	agree := 0
	for i, c := range cases {
		g, p := ParseGold(c.Gold), Extract(c.Pred)
		got := 0
		if Same(g, p) {
			got = 1
		}
		if got == c.Expected {
			agree++
			continue
		}
		reason := "value comparison"
		switch {
		case !g.Valid() || !p.Valid():
			reason = "extraction failed"
		case c.Expected == 0:
			reason = "false positive"
		}
		t.Logf("case %d (%s) expected %d got %d: gold %q [%s %q] pred [%s %q]", i, reason, c.Expected, got,
			trunc(c.Gold), g.Rule, trunc(g.Raw), p.Rule, trunc(p.Raw))
	}
	rate := float64(agree) / float64(len(cases))
	t.Logf("agreement %d/%d = %.1f%%", agree, len(cases), 100*rate)
	if rate < 0.95 {
		t.Fatalf("agreement %.1f%% < 95%%", 100*rate)
	}
}

func trunc(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 90 {
		return s[:40] + " … " + s[len(s)-40:]
	}
	return s
}
