package kernels

// Sample is one batched sampling call: one token per row of Logits. Per row r, as serl_sample:
// presence penalty on every distinct token of the row's history, bans, then greedy (Temperature 0:
// the lowest index among equal maxima) or z/Temperature → top-k → top-p → a draw with the uniform of
// Philox4x32-10 keyed by (Seeds[r], SeqIDs[r], Steps[r]), so a row's token does not depend on the batch.
type Sample struct {
	Logits Tensor // F32 or BF16 [n, ld]
	// Vocab, when > 0, samples among the first Vocab columns only (a padded LM head); 0: all ld columns.
	Vocab int

	Temperature     Tensor // F32 [n], ≥ 0
	TopP            Tensor // F32 [n], in (0, 1]; ≥ 1 keeps everything
	PresencePenalty Tensor // F32 [n], subtracted once from each distinct token of the history, before temperature
	TopK            Tensor // I32 [n]; ≤ 0 keeps everything

	Hist    Tensor // optional I32 [n, ldHist]: generated tokens so far
	HistLen Tensor // I32 [n], with Hist: how many of each row's Hist entries count
	BanIDs  Tensor // optional I32 [nBan]: ids set to −inf
	BanRows Tensor // optional I32 [n]: rows where BanIDs apply (≠ 0); absent: every row

	Seeds, SeqIDs Tensor // U64 [n]
	Steps         Tensor // I32 [n]

	Tokens Tensor // I32 [n] out
	LogP   Tensor // F32 [n] out, optional: log-prob of the token under the penalised, temperature-scaled
	// distribution before top-k/top-p truncation
}

// Sample draws one token per row; see the Sample type.
func (d *Device) Sample(p Sample) error {
	const op = "sample"
	if err := d.checkFloat(op, "Logits", p.Logits, 0); err != nil {
		return err
	}
	if p.Logits.Rank() != 2 {
		return opErr(op, "Logits %s: want rank 2 [n, vocab]", p.Logits)
	}
	n, ld := p.Logits.Dim(0), p.Logits.Dim(1)
	vocab := ld
	if p.Vocab > 0 {
		vocab = p.Vocab
	}
	if vocab < 1 || vocab > ld {
		return opErr(op, "Vocab %d outside [1, %d]", vocab, ld)
	}
	if err := firstErr(
		d.check(op, "Temperature", p.Temperature, F32, n), d.check(op, "TopP", p.TopP, F32, n),
		d.check(op, "PresencePenalty", p.PresencePenalty, F32, n), d.check(op, "TopK", p.TopK, I32, n),
		d.check(op, "Seeds", p.Seeds, U64, n), d.check(op, "SeqIDs", p.SeqIDs, U64, n),
		d.check(op, "Steps", p.Steps, I32, n), d.check(op, "Tokens", p.Tokens, I32, n),
		d.checkOpt(op, "LogP", p.LogP, F32, n), d.checkOpt(op, "BanIDs", p.BanIDs, I32, 0),
		d.checkOpt(op, "BanRows", p.BanRows, I32, n)); err != nil {
		return err
	}
	ldHist := 0
	if p.Hist.Valid() || p.HistLen.Valid() {
		if err := firstErr(d.check(op, "Hist", p.Hist, I32, 0), d.check(op, "HistLen", p.HistLen, I32, n)); err != nil {
			return err
		}
		if p.Hist.Rank() != 2 || p.Hist.Dim(0) != n {
			return opErr(op, "Hist %s: want [%d, ldHist]", p.Hist, n)
		}
		ldHist = p.Hist.Dim(1)
	}
	nBan := 0
	if p.BanIDs.Valid() {
		nBan = p.BanIDs.Len()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[sampleArgs](d)
	a.n, a.vocab, a.ld, a.ldHist, a.nBan = int32(n), int32(vocab), int32(ld), int32(ldHist), int32(nBan)
	a.logits, a.temperature, a.topK, a.topP = p.Logits.addr(), p.Temperature.addr(), p.TopK.addr(), p.TopP.addr()
	a.logitsDT = p.Logits.dtype
	a.presencePenalty, a.hist, a.histLen = p.PresencePenalty.addr(), p.Hist.addr(), p.HistLen.addr()
	a.banIDs, a.banRows = p.BanIDs.addr(), p.BanRows.addr()
	a.seeds, a.seqIDs, a.steps, a.tokens, a.logp = p.Seeds.addr(), p.SeqIDs.addr(), p.Steps.addr(), p.Tokens.addr(), p.LogP.addr()
	nv := float64(n) * float64(vocab)
	return d.run(opSample, 10*nv, 4*nv+40*float64(n))
}
