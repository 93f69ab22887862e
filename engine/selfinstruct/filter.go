package selfinstruct

import "strings"

// DefaultThreshold is the official ROUGE-L bar: reject iff max F1 > 0.7.
const DefaultThreshold = 0.7

// Counts holds how many candidates ended with each Reason.
type Counts [NumReasons]int

// Add accumulates o into c.
func (c *Counts) Add(o Counts) {
	for i := range c {
		c[i] += o[i]
	}
}

// Rejected is the number of candidates that did not pass.
func (c Counts) Rejected() int {
	n := 0
	for r, k := range c {
		if Reason(r) != Accepted {
			n += k
		}
	}
	return n
}

// String lists the non-zero counts, e.g. "Accepted=3 TooShort=1".
func (c Counts) String() string {
	var b strings.Builder
	for r, k := range c {
		if k == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Reason(r).String())
		b.WriteByte('=')
		b.WriteString(itoa(k))
	}
	return b.String()
}

// Filter turns completions into accepted problems: parse, rule filters, then
// ROUGE-L against Pool. Each accepted problem is added to Pool before the
// next candidate is checked, as official (pending includes what was accepted
// earlier in the same round).
type Filter struct {
	Pool           *Pool
	Threshold      float64        // reject iff max F1 > Threshold
	Capitalization Capitalization // CapitalizeFirst unless faithfulness is wanted
}

// NewFilter returns a Filter over pool with the default threshold and
// capitalisation.
func NewFilter(pool *Pool) *Filter {
	return &Filter{Pool: pool, Threshold: DefaultThreshold}
}

// FilterResult is what one completion produced.
type FilterResult struct {
	Accepted   []string    // accepted problems, in completion order
	Candidates []Candidate // every parsed question with its outcome
	Counts     Counts      // candidates per Reason
}

// Process filters one completion and adds the accepted problems to the pool.
func (f *Filter) Process(completion string) FilterResult {
	cands := ParseCompletion(completion, f.Capitalization)
	res := FilterResult{Candidates: cands}
	for i := range cands {
		c := &cands[i]
		if c.Reason == Accepted {
			// MaxF1 rather than the early-exit test: the score and the
			// matching problem are worth reporting, and the pruning bound
			// keeps the full scan cheap.
			c.Score, c.Match = f.Pool.MaxF1(c.Text)
			if c.Match >= 0 && c.Score > f.Threshold {
				c.Reason = Similar
			} else {
				f.Pool.Add(c.Text)
				res.Accepted = append(res.Accepted, c.Text)
			}
		}
		res.Counts[c.Reason]++
	}
	return res
}
