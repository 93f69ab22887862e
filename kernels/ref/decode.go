package ref

// DecodeAdvance is serl_decode_advance on host slices: table is [n·maxBlocks] row-major, hist
// [n·ldHist] (nil: none), banRows and minNew nil together or [n]; patch (nil: none) holds a count and
// that many (flat index, block) pairs, and its count is reset to 0.
func DecodeAdvance(tokens, patch, table, ids, pos, seqLens, slots, steps, hist []int32, ldHist int,
	banRows, minNew []int32, blockSize, maxBlocks int) {
	n := len(tokens)
	if patch != nil {
		for i := 0; i < min(int(patch[0]), (len(patch)-1)/2); i++ {
			if at := int(patch[1+2*i]); at >= 0 && at < n*maxBlocks {
				table[at] = patch[2+2*i]
			}
		}
		patch[0] = 0
	}
	for r, t := range tokens {
		p := int(pos[r]) + 1
		ids[r], pos[r], seqLens[r] = t, int32(p), int32(p+1)
		slots[r] = -1
		if bi := p / blockSize; p >= 0 && bi < maxBlocks {
			slots[r] = table[r*maxBlocks+bi]*int32(blockSize) + int32(p%blockSize)
		}
		s := int(steps[r])
		if hist != nil && s >= 0 && s < ldHist {
			hist[r*ldHist+s] = t
		}
		steps[r] = int32(s + 1)
		if banRows != nil {
			banRows[r] = 0
			if s+1 < int(minNew[r]) {
				banRows[r] = 1
			}
		}
	}
}
