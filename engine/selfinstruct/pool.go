package selfinstruct

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool holds the problems a new candidate is compared against with ROUGE-L
// (seed + pending + every accepted generated problem, docs/SERL.md D6; the caller
// decides what goes in). Each problem is tokenised once and its tokens are
// interned to uint32 ids, so a comparison is an LCS over integers.
//
// Queries run in parallel on a fixed number of goroutines that take the pool
// in chunks. Queries may run concurrently with each other; Add takes a write
// lock.
type Pool struct {
	mu      sync.RWMutex
	ids     map[string]uint32
	toks    []uint32 // all problems' token ids, concatenated
	offs    []int    // problem i is toks[offs[i]:offs[i+1]]
	workers int
	buf     []byte
}

// unknownID marks candidate tokens that occur nowhere in the pool: they can
// never match, and the interner never hands this id out.
const unknownID = ^uint32(0)

// chunkSize is the number of problems a worker claims at a time: large
// enough to amortise the atomic counter, small enough to balance the load
// and to notice an early exit quickly.
const chunkSize = 256

// NewPool returns an empty pool whose queries use runtime.GOMAXPROCS(0)
// goroutines.
func NewPool() *Pool {
	return &Pool{ids: map[string]uint32{}, offs: []int{0}, workers: runtime.GOMAXPROCS(0)}
}

// SetWorkers sets the number of goroutines a query uses (at least 1).
func (p *Pool) SetWorkers(n int) {
	p.mu.Lock()
	p.workers = max(n, 1)
	p.mu.Unlock()
}

// Add tokenises text, appends it to the pool and returns its index.
func (p *Pool) Add(text string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = p.buf[:0]
	forEachToken(text, p.buf, func(tok []byte) {
		id, ok := p.ids[string(tok)] // no allocation for the lookup
		if !ok {
			id = uint32(len(p.ids))
			p.ids[string(tok)] = id
		}
		p.toks = append(p.toks, id)
	})
	p.offs = append(p.offs, len(p.toks))
	return len(p.offs) - 2
}

// Len is the number of problems in the pool.
func (p *Pool) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.offs) - 1
}

// MaxF1 returns the highest ROUGE-L F1 of candidate against the pool and the
// index of the first problem reaching it; (0, -1) for an empty pool.
func (p *Pool) MaxF1(candidate string) (float64, int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	q := p.query(candidate)
	return q.run(p, -1)
}

// Similar reports whether some problem in the pool has ROUGE-L F1 with
// candidate strictly above threshold (the official rule rejects at > 0.7).
// It stops as soon as one is found.
func (p *Pool) Similar(candidate string, threshold float64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	q := p.query(candidate)
	best, _ := q.run(p, threshold)
	return best > threshold
}

// query is a tokenised candidate with a presence filter over its token ids.
type query struct {
	toks []uint32
	// present has bit id%4096 set for every known candidate token. Rows of the
	// DP for pool tokens absent from the candidate leave the row unchanged,
	// so those tokens are dropped before the DP; a false positive only costs
	// time.
	present [64]uint64
}

func (p *Pool) query(candidate string) *query {
	q := &query{}
	forEachToken(candidate, make([]byte, 0, 32), func(tok []byte) {
		id, ok := p.ids[string(tok)]
		if !ok {
			id = unknownID
		} else {
			q.present[id>>6&63] |= 1 << (id & 63)
		}
		q.toks = append(q.toks, id)
	})
	return q
}

// scratch is one worker's reusable memory: nothing is allocated per
// comparison.
type scratch struct {
	row  []int32
	kept []uint32
}

// result is a worker's best score with the lowest index reaching it.
type result struct {
	score float64
	index int
}

func (r result) better(o result) bool {
	return o.index >= 0 && (r.index < 0 || o.score > r.score || o.score == r.score && o.index < r.index)
}

// run scores the candidate against the whole pool. With threshold >= 0 it
// only needs to know whether some score exceeds threshold and stops early.
func (q *query) run(p *Pool, threshold float64) (float64, int) {
	n := len(p.offs) - 1
	if n == 0 {
		return 0, -1
	}
	nchunks := (n + chunkSize - 1) / chunkSize
	workers := min(p.workers, nchunks)
	var next atomic.Int64
	var stop atomic.Bool
	results := make([]result, workers)
	work := func(w int) {
		s := scratch{row: make([]int32, len(q.toks))}
		best := result{index: -1}
		for !stop.Load() {
			c := int(next.Add(1)) - 1
			if c >= nchunks {
				break
			}
			for i := c * chunkSize; i < min(n, (c+1)*chunkSize); i++ {
				f, ok := q.score(p.toks[p.offs[i]:p.offs[i+1]], &s, best.score, best.index >= 0, threshold)
				if !ok {
					continue
				}
				if r := (result{f, i}); best.better(r) {
					best = r
				}
				if threshold >= 0 && f > threshold {
					stop.Store(true)
					break
				}
			}
		}
		results[w] = best
	}
	if workers == 1 {
		work(0)
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { work(w) })
		}
		wg.Wait()
	}
	best := result{index: -1}
	for _, r := range results {
		if best.better(r) {
			best = r
		}
	}
	if best.index < 0 {
		return 0, -1
	}
	return best.score, best.index
}

// pruneMargin absorbs the rounding of f1 so that pruning on an upper bound
// never discards a score that the exact formula would place above the bar.
const pruneMargin = 1e-9

// score returns the F1 of the candidate against doc, or ok=false when an
// upper bound shows it cannot beat best (if haveBest) or exceed threshold
// (if threshold >= 0), in which case the exact value does not matter.
func (q *query) score(doc []uint32, s *scratch, best float64, haveBest bool, threshold float64) (float64, bool) {
	kept := s.kept[:0]
	for _, t := range doc {
		if q.present[t>>6&63]&(1<<(t&63)) != 0 {
			kept = append(kept, t)
		}
	}
	s.kept = kept
	na, nb := len(q.toks), len(doc)
	if len(kept) == 0 || na == 0 {
		return 0, true
	}
	// The LCS cannot exceed the number of doc tokens that occur in the
	// candidate, nor the candidate's length.
	ub := f1(int32(min(len(kept), na)), na, nb)
	if threshold >= 0 && ub <= threshold-pruneMargin {
		return 0, false
	}
	if haveBest && ub < best-pruneMargin {
		return 0, false
	}
	return f1(lcs(q.toks, kept, s.row), na, nb), true
}
