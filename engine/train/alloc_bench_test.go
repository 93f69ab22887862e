package train

import "testing"

func BenchmarkMicroStep(b *testing.B) {
	m := tinyModel(b, 3)
	defer m.Free()
	lens := []int{30, 20}
	ids := fixedBatch(7, m.Config.Vocab, lens)
	sched, _ := NewSchedule(1e-4, 100, 0.03, 0.1)
	tr, _ := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 50, 2)
	defer tr.Free()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tr.AccumulateNLL(ids, lens, 1)
		tr.Step()
	}
}
