package generate

import "fmt"

// blockPool hands out KV-cache blocks with reference counts, so the samples of one prompt share its
// blocks, and reserves each admitted sequence's worst case up front, so a running sequence never
// waits for a block (no preemption, no stall).
type blockPool struct {
	free     []int32
	refs     []int32
	reserved int // blocks promised to admitted sequences but not yet taken
}

func newBlockPool(n int) *blockPool {
	p := &blockPool{free: make([]int32, n), refs: make([]int32, n)}
	for i := range p.free {
		p.free[i] = int32(n - 1 - i) // pop from the end: block 0 first
	}
	return p
}

// available is how many blocks can still be promised.
func (p *blockPool) available() int { return len(p.free) - p.reserved }

func (p *blockPool) reserve(n int) bool {
	if n > p.available() {
		return false
	}
	p.reserved += n
	return true
}

// take pops a reserved block.
func (p *blockPool) take() (int32, error) {
	if p.reserved < 1 || len(p.free) == 0 {
		return 0, fmt.Errorf("generate: block pool exhausted (reservation accounting broken)")
	}
	p.reserved--
	b := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.refs[b] = 1
	return b, nil
}

func (p *blockPool) retain(b int32) { p.refs[b]++ }

func (p *blockPool) release(b int32) {
	p.refs[b]--
	if p.refs[b] == 0 {
		p.free = append(p.free, b)
	}
}

// unreserve gives back promised blocks a finished sequence did not need.
func (p *blockPool) unreserve(n int) { p.reserved -= n }
