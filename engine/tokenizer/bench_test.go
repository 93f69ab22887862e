package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchText is the trainer corpus (math problems, plus the hard strings) three times, ~100 KB.
func benchText(b *testing.B) string {
	data, err := os.ReadFile(filepath.Join("testdata", "train", "corpus.txt"))
	if err != nil {
		b.Fatal(err)
	}
	return strings.Repeat(string(data), 3)
}

func BenchmarkEncode(b *testing.B) {
	text := benchText(b)
	for _, fam := range families {
		tk := loadFamily(b, fam)
		b.Run(fam, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tk.Encode(text, EncodeOptions{})
			}
		})
	}
}

// BenchmarkEncodeCold measures without the word cache (every word merged from bytes).
func BenchmarkEncodeCold(b *testing.B) {
	text := benchText(b)
	tk := loadFamily(b, "qwen2")
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tk.cache.init()
		tk.Encode(text, EncodeOptions{})
	}
}

func BenchmarkEncodeParallel(b *testing.B) {
	text := benchText(b)
	tk := loadFamily(b, "qwen2")
	b.SetBytes(int64(len(text)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk.Encode(text, EncodeOptions{})
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	text := benchText(b)
	tk := loadFamily(b, "qwen2")
	ids := tk.Encode(text, EncodeOptions{})
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tk.Decode(ids, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTrain(b *testing.B) {
	lines := corpusLines(b, filepath.Join("testdata", "train", "corpus.txt"))
	for b.Loop() {
		if _, err := Train(func(yield func(string) bool) {
			for _, l := range lines {
				if !yield(l) {
					return
				}
			}
		}, 2000, TrainOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
