package generate_test

import (
	"fmt"
	"log"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// Embedding the engine: open a device, load a Hugging Face folder, and sample continuations with
// continuous batching. The samples of one request share its prompt's prefill.
func Example() {
	dev, err := kernels.Open("cpu", 0)
	if err != nil {
		log.Fatal(err)
	}
	m, err := model.Load(dev, "../model/testdata/llama_f32")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Free()
	e, err := generate.New(m, generate.Config{BlockSize: 16, NumBlocks: 64, MaxBatch: 8, MaxPrefillTokens: 256, MaxSeqLen: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Free()
	out, err := e.Generate([]generate.Request{
		{Prompt: []int32{5, 17, 42}, N: 1, Params: generate.Params{MaxNewTokens: 8, StopIDs: []int32{}}}, // greedy
		{Prompt: []int32{7, 8}, N: 4, Params: generate.Params{MaxNewTokens: 8, Temperature: 1, Seed: 1}},
	}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("greedy tokens:", len(out[0][0].Tokens))
	fmt.Println("samples:", len(out[1]))
	fmt.Println("prefills:", e.Stats().Prefills)
	// Output:
	// greedy tokens: 8
	// samples: 4
	// prefills: 2
}
