package dist

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Gather collects every rank's share of a list, concatenated in rank order, on every rank: with
// shares from Split, the list one process would have made. Shares travel as JSON (float32 and float64
// values round-trip exactly); what names the data in errors.
func Gather[T any](c *Comm, what string, share []T) ([]T, error) {
	if c.Size() == 1 {
		return share, nil
	}
	if trace {
		fmt.Fprintf(os.Stderr, "dist trace: rank %d: gathering %s\n", c.rank, what)
	}
	b, err := json.Marshal(share)
	if err != nil {
		return nil, fmt.Errorf("dist: gathering %s: %w", what, err)
	}
	recs, err := c.AllGather(b)
	if err != nil {
		return nil, fmt.Errorf("dist: gathering %s: %w", what, err)
	}
	var all []T
	for rank, rec := range recs {
		var part []T
		if err := json.Unmarshal(rec, &part); err != nil {
			return nil, fmt.Errorf("dist: gathering %s: rank %d's share: %w", what, rank, err)
		}
		all = append(all, part...)
	}
	return all, nil
}

// Agree makes every rank fail when one does: each rank's error (or none) is gathered and a failure
// anywhere is returned everywhere, naming the ranks, so no rank waits in a later collective for one
// that has given up.
func Agree(c *Comm, what string, err error) error {
	if c.Size() == 1 {
		return err
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	recs, gerr := c.AllGather([]byte(msg))
	if err != nil {
		return err
	}
	if gerr != nil {
		return fmt.Errorf("%s: %w", what, gerr)
	}
	var fails []string
	for rank, rec := range recs {
		if len(rec) > 0 {
			fails = append(fails, fmt.Sprintf("rank %d: %s", rank, rec))
		}
	}
	if len(fails) > 0 {
		return fmt.Errorf("%s failed on another rank: %s", what, strings.Join(fails, "; "))
	}
	return nil
}

// AnyOf reports whether flag is set on any rank.
func AnyOf(c *Comm, what string, flag bool) (bool, error) {
	flags, err := Gather(c, what, []bool{flag})
	if err != nil {
		return false, err
	}
	for _, f := range flags {
		if f {
			return true, nil
		}
	}
	return false, nil
}
