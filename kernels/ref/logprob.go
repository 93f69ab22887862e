package ref

import "math"

// LogProbFwd: for each row t of logits (row stride ld, first vocab columns), z = logits·invTemp (a
// product in T, as the native op rounds it), lse = logsumexp(z), logp = z[target] − lse (0 for a
// negative target when ignoreNegative), entropy = −Σ p log p. Any of logp, entropy, lse may be nil.
// Differences are taken from the maximum first, so a huge common offset cannot absorb them.
func LogProbFwd[T Float](logp, entropy, lse, logits []T, targets []int32, vocab, ld int, invTemp float64, ignoreNegative bool) {
	for t := range targets {
		z := make([]float64, vocab)
		m := math.Inf(-1)
		for j := range z {
			z[j] = float64(logits[t*ld+j] * T(invTemp))
			m = math.Max(m, z[j])
		}
		var s float64
		for _, v := range z {
			s += math.Exp(v - m)
		}
		ls := math.Log(s)
		if lse != nil {
			lse[t] = T(m + ls)
		}
		if entropy != nil {
			var h float64
			for _, v := range z {
				if p := math.Exp(v - m - ls); p > 0 {
					h -= p * (v - m - ls)
				}
			}
			entropy[t] = T(h)
		}
		if logp != nil {
			if tg := targets[t]; tg < 0 && ignoreNegative {
				logp[t] = 0
			} else {
				logp[t] = T(z[tg] - m - ls)
			}
		}
	}
}

// LogProbBwd: dlogits[t,:] = coef[t]·invTemp·(onehot(target) − exp(z − lse[t])) with the given lse
// (overwrites; rows with a negative target under ignoreNegative get 0).
func LogProbBwd[T Float](dlogits, logits []T, targets []int32, lse, coef []T, vocab, ld int, invTemp float64, ignoreNegative bool) {
	for t, tg := range targets {
		row := dlogits[t*ld : t*ld+vocab]
		if tg < 0 && ignoreNegative {
			clear(row)
			continue
		}
		c := float64(coef[t]) * invTemp
		for j := range row {
			p := math.Exp(float64(logits[t*ld+j]*T(invTemp)) - float64(lse[t]))
			oh := 0.0
			if int32(j) == tg {
				oh = 1
			}
			row[j] = T(c * (oh - p))
		}
	}
}
