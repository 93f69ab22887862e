package ref

import (
	"math"
	"math/bits"
	"sort"
)

// Philox4x32_10 is Random123's Philox4x32 with 10 rounds: the block for counter ctr under key key.
func Philox4x32_10(ctr [4]uint32, key [2]uint32) [4]uint32 {
	for r := 0; r < 10; r++ {
		hi0, lo0 := bits.Mul32(0xD2511F53, ctr[0])
		hi1, lo1 := bits.Mul32(0xCD9E8D57, ctr[2])
		ctr = [4]uint32{hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0}
		key[0] += 0x9E3779B9
		key[1] += 0xBB67AE85
	}
	return ctr
}

// PhiloxUniform is the sampler's uniform in [0,1) with 53 bits: key = seed, counter = (seq, step, 0),
// the top 53 bits of the block's first two words.
func PhiloxUniform(seed, seq uint64, step uint32) float64 {
	c := Philox4x32_10([4]uint32{uint32(seq), uint32(seq >> 32), step, 0}, [2]uint32{uint32(seed), uint32(seed >> 32)})
	return float64((uint64(c[0])<<32|uint64(c[1]))>>11) * 0x1p-53
}

// SampleRow is one row of a sampling call.
type SampleRow struct {
	Logits                             []float32
	Temperature, TopP, PresencePenalty float32
	TopK                               int32
	Hist                               []int32 // tokens generated so far (repeats penalised once)
	Ban                                []int32 // ids set to −inf in this row
	Seed, SeqID                        uint64
	Step                               int32
}

// SampleResult is the reference's choice. Margin is the smallest relative distance of any decision
// (the top-k cut, the top-p cut, the uniform's interval, greedy's runner-up) from its boundary: where it
// is below float32 resolution a native result may legitimately differ.
type SampleResult struct {
	Token  int
	LogP   float64
	Margin float64
}

// Sample is the obvious implementation of serl_sample for one row: a full sort of the vocabulary, the
// kept set as a prefix of (z descending, index ascending), and an inverse-CDF draw over the kept tokens
// in index order.
func Sample(r SampleRow) SampleResult {
	V := len(r.Logits)
	T := float64(r.Temperature)
	z := make([]float64, V)
	seen := make(map[int32]bool)
	for _, h := range r.Hist {
		seen[h] = true
	}
	// z in float32 arithmetic, as the ABI's logits are: (x − penalty) / T, each step rounded
	for j, x := range r.Logits {
		if seen[int32(j)] {
			x -= r.PresencePenalty
		}
		if T > 0 {
			x /= r.Temperature
		}
		z[j] = float64(x)
	}
	for _, b := range r.Ban {
		z[b] = math.Inf(-1)
	}
	order := make([]int, V)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
	m := z[order[0]]
	var S float64
	for _, v := range z {
		S += math.Exp(v - m)
	}
	lse := m + math.Log(S)
	gap := func(i int) float64 { // relative gap between ranks i and i+1
		if i+1 >= V {
			return math.Inf(1)
		}
		return (z[order[i]] - z[order[i+1]]) / math.Max(1, math.Abs(z[order[i]]))
	}
	if T == 0 {
		return SampleResult{Token: order[0], LogP: z[order[0]] - lse, Margin: gap(0)}
	}
	margin := math.Inf(1)
	w := func(j int) float64 { return math.Exp(z[j] - m) }
	n := V
	if k := int(r.TopK); k > 0 && k < V {
		n = k
		margin = math.Min(margin, gap(k-1))
	}
	var WK float64
	for _, j := range order[:n] {
		WK += w(j)
	}
	if p := float64(r.TopP); p < 1 {
		target := p * WK
		var cum float64
		kept := 0
		for kept < n && cum < target {
			cum += w(order[kept])
			kept++
		}
		// the last kept token's preceding mass and the first dropped one's, against the target (the first
		// token is always kept: no decision there)
		if kept > 1 {
			margin = math.Min(margin, math.Abs(target-(cum-w(order[kept-1])))/WK)
		}
		if kept < n {
			margin = math.Min(margin, math.Abs(cum-target)/WK)
		}
		n = kept
	}
	keep := make([]bool, V)
	var WF float64
	for _, j := range order[:n] {
		keep[j] = true
		WF += w(j)
	}
	target := PhiloxUniform(r.Seed, r.SeqID, uint32(r.Step)) * WF
	var cum float64
	tok := -1
	for j := 0; j < V; j++ {
		if !keep[j] || w(j) == 0 {
			continue
		}
		cum += w(j)
		margin = math.Min(margin, math.Abs(cum-target)/WF)
		if tok < 0 && cum > target {
			tok = j
		}
	}
	return SampleResult{Token: tok, LogP: z[tok] - lse, Margin: margin}
}
