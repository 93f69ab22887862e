package ref

import (
	"fmt"
	"math"
)

// Whiten: masked mean μ and biased variance σ² (mask values are weights); y = (x−μ)/sqrt(max(σ², eps))
// where mask ≠ 0 (y = x−μ when !stdNorm), else 0. Returns μ, σ².
func Whiten[T Float](y, x, mask []T, stdNorm bool, eps float64) (mu, variance float64) {
	var sm, smx float64
	for i := range x {
		sm += float64(mask[i])
		smx += float64(mask[i]) * float64(x[i])
	}
	mu = smx / sm
	for i := range x {
		d := float64(x[i]) - mu
		variance += float64(mask[i]) * d * d
	}
	variance /= sm
	WhitenApply(y, x, mask, mu, variance, stdNorm, eps)
	return mu, variance
}

// WhitenApply is Whiten's second half with given statistics (serl_whiten's APPLY mode).
func WhitenApply[T Float](y, x, mask []T, mu, variance float64, stdNorm bool, eps float64) {
	inv := 1.0
	if stdNorm {
		inv = 1 / math.Sqrt(math.Max(variance, eps))
	}
	for i := range x {
		if mask[i] != 0 {
			y[i] = T((float64(x[i]) - mu) * inv)
		} else {
			y[i] = 0
		}
	}
}

// Group baseline modes, as SERL_GROUP_* in serl.h.
const (
	GroupZScore = 0 // GRPO: (r − mean)/(std + eps), std Bessel-corrected
	GroupRLOO   = 1 // r − mean of the others
	GroupCenter = 2 // r − mean
)

// GroupBaseline applies mode to each run of groupSize consecutive rewards.
func GroupBaseline[T Float](y, r []T, mode, groupSize int, eps float64) {
	G := groupSize
	for g := 0; g < len(r)/G; g++ {
		rs := r[g*G : (g+1)*G]
		var s float64
		for _, v := range rs {
			s += float64(v)
		}
		mean := s / float64(G)
		var ss float64
		for _, v := range rs {
			ss += (float64(v) - mean) * (float64(v) - mean)
		}
		std := math.Sqrt(ss / float64(G-1))
		for i, v := range rs {
			var out float64
			switch mode {
			case GroupZScore:
				out = (float64(v) - mean) / (std + eps)
			case GroupRLOO:
				out = float64(v) - (s-float64(v))/float64(G-1)
			case GroupCenter:
				out = float64(v) - mean
			default:
				panic(fmt.Sprintf("ref: group mode %d", mode))
			}
			y[g*G+i] = T(out)
		}
	}
}

// GradNorm returns the global L2 norm of g and, when maxNorm > 0 and the norm exceeds it, scales g in
// place by maxNorm/(norm + 1e-6).
func GradNorm[T Float](g []T, maxNorm float64) float64 {
	var s float64
	for _, v := range g {
		s += float64(v) * float64(v)
	}
	norm := math.Sqrt(s)
	if maxNorm > 0 && norm > maxNorm {
		c := maxNorm / (norm + 1e-6)
		for i := range g {
			g[i] = T(float64(g[i]) * c)
		}
	}
	return norm
}

// AdamW is one PyTorch AdamW step (step ≥ 1) on p, m, v in place:
// g' = g·gradScale; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²; p −= lr·wd·p;
// p −= lr·(m/(1−β1^step)) / (sqrt(v/(1−β2^step)) + eps).
func AdamW[T Float](p, g, m, v []T, step int, lr, beta1, beta2, eps, wd, gradScale float64) {
	bc1 := 1 - math.Pow(beta1, float64(step))
	bc2 := 1 - math.Pow(beta2, float64(step))
	for i := range p {
		gi := float64(g[i]) * gradScale
		mi := beta1*float64(m[i]) + (1-beta1)*gi
		vi := beta2*float64(v[i]) + (1-beta2)*gi*gi
		pi := float64(p[i])
		pi -= lr * wd * pi
		pi -= lr * (mi / bc1) / (math.Sqrt(vi/bc2) + eps)
		m[i], v[i], p[i] = T(mi), T(vi), T(pi)
	}
}
