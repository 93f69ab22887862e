package kernels

// DecodeAdvance is a decode batch's device-side state and the token each row has just drawn; see
// Device.DecodeAdvance. Every tensor is I32; row r of each [n] tensor belongs to one sequence.
type DecodeAdvance struct {
	Tokens Tensor // [n] the tokens just drawn
	// Patch, optional, is [1 + 2·maxPatch]: Patch[0] (flat index into Table, block id) pairs follow, indices
	// distinct; the op applies them and resets Patch[0] to 0.
	Patch Tensor
	Table Tensor // [n, maxBlocks] block table

	IDs, Pos, SeqLens, Slots Tensor // [n] the model's decode inputs
	Steps                    Tensor // [n] tokens drawn so far per row (the sampler's step and history length)

	Hist    Tensor // optional [n, ldHist]: each row's drawn tokens, for the presence penalty
	BanRows Tensor // optional [n]: set to Steps < MinNew (the sampler's stop-id ban flag)
	MinNew  Tensor // [n] with BanRows

	BlockSize int // tokens per KV block
}

// DecodeAdvance moves a decode batch one token on without the host: it applies the block-table
// patches uploaded since the last call (and consumes them, so calls with the same arguments can repeat
// — a captured graph), then per row makes the drawn token the next input id, advances the position, length and
// step, computes the cache slot of the new position from the block table (−1 where the row has no block
// for it), appends the token to the history and recomputes the ban flag. So a steady-state decode step
// uploads nothing; the host sends only the table entries of blocks it took.
func (d *Device) DecodeAdvance(p DecodeAdvance) error {
	const op = "decode_advance"
	n := p.Tokens.Len()
	if err := d.check(op, "Tokens", p.Tokens, I32, 1); err != nil {
		return err
	}
	if p.BlockSize < 1 {
		return opErr(op, "BlockSize %d (want ≥ 1)", p.BlockSize)
	}
	if err := firstErr(d.check(op, "Table", p.Table, I32, n), d.check(op, "IDs", p.IDs, I32, n),
		d.check(op, "Pos", p.Pos, I32, n), d.check(op, "SeqLens", p.SeqLens, I32, n), d.check(op, "Slots", p.Slots, I32, n),
		d.check(op, "Steps", p.Steps, I32, n), d.checkOpt(op, "Patch", p.Patch, I32, 0),
		d.checkOpt(op, "Hist", p.Hist, I32, 0), d.checkOpt(op, "BanRows", p.BanRows, I32, n),
		d.checkOpt(op, "MinNew", p.MinNew, I32, n)); err != nil {
		return err
	}
	if p.Table.Rank() != 2 || p.Table.Dim(0) != n {
		return opErr(op, "Table %s: want [%d, maxBlocks]", p.Table, n)
	}
	ldHist := 0
	if p.Hist.Valid() {
		if p.Hist.Rank() != 2 || p.Hist.Dim(0) != n {
			return opErr(op, "Hist %s: want [%d, ldHist]", p.Hist, n)
		}
		ldHist = p.Hist.Dim(1)
	}
	if p.BanRows.Valid() != p.MinNew.Valid() {
		return opErr(op, "BanRows and MinNew go together")
	}
	maxPatch := 0
	if p.Patch.Valid() {
		if p.Patch.Len()%2 != 1 {
			return opErr(op, "Patch %s: want a count and (index, block) pairs", p.Patch)
		}
		maxPatch = p.Patch.Len() / 2
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[decodeAdvanceArgs](d)
	a.n, a.blockSize, a.maxBlocks, a.ldHist, a.maxPatch = int32(n), int32(p.BlockSize), int32(p.Table.Dim(1)), int32(ldHist), int32(maxPatch)
	a.tokens, a.patch, a.table = p.Tokens.addr(), p.Patch.addr(), p.Table.addr()
	a.ids, a.pos, a.seqLens, a.slots = p.IDs.addr(), p.Pos.addr(), p.SeqLens.addr(), p.Slots.addr()
	a.steps, a.hist, a.banRows, a.minNew = p.Steps.addr(), p.Hist.addr(), p.BanRows.addr(), p.MinNew.addr()
	return d.run(opDecodeAdvance, 0, 4*float64(10*n+1))
}
