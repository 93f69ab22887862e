// Package pretrain trains serl's built-in model from scratch: a byte-level BPE tokenizer and a small
// Qwen2-architecture transformer, supervised on a corpus generated from the built-in task that teaches
// the two jobs SeRL asks of a model — answering a problem in the chat format with a \boxed{} answer,
// and continuing SeRL's self-instruction prompt with new numbered problems (docs/SERL.md §2.1–2.2).
// Loss is on the assistant turn only. Runs checkpoint atomically and resume exactly.
package pretrain

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/engine/tokenizer"
)

// Special tokens of serl's tokenizer, in id order (0, 1, 2), as Qwen2's.
var SpecialTokens = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}

// Source produces training problems of a difficulty level (1..; 0: the source's own choice): the
// same seed and level always give the same problem.
type Source func(seed uint64, level int) evaluate.Problem

// Corpus is the deterministic stream of training documents: document i depends only on the seed and i,
// so a resumed run sees exactly the documents the interrupted one would have.
type Corpus struct {
	Source Source
	Seed   uint64
	// SelfInstructShare is the fraction of self-instruction documents (the rest are solving ones).
	SelfInstructShare float64
	// Shots is the number of numbered examples in a self-instruction prompt (SeRL: 8); the model then
	// writes MinNew..MaxNew new problems.
	Shots, MinNew, MaxNew int
	// LevelWeights, when set, draws each problem's level: level l+1 with weight LevelWeights[l]
	// (weights away from the source's own mix: the shipped recipe, 2,3,3,2,2, spends more of a short
	// run on the middle and hard levels, whose numbers need the most examples).
	LevelWeights []float64
	// DirectShare is the fraction of solving documents whose assistant turn is only the solution's last
	// line ("The answer is \boxed{…}."), an answer given without working; ListShare the fraction whose
	// steps are a numbered list ("1) …") instead of "Step 1: …". The model learns all three habits. With
	// answering at once the likeliest single one (DirectShare above each worked style's share), greedy
	// decoding follows it and guesses, while the other samples work the problem out: the gap between a base
	// model's greedy answer and its majority vote, and the room RL has to teach it to reason, that SeRL
	// relies on.
	DirectShare, ListShare float64
	// DirectEndings, when set, limits answering at once to problems whose question ends in one of these
	// words (QuestionEnding: "… have now?", "What is the value of …?"); every other problem is always
	// worked out, in the list and step styles' ratio. The model learns which questions get an answer
	// at once, so its greedy path guesses on those only: greedy pass@1 is then worked answers on most
	// problems and guesses on the rest, at every level, while the samples that work those out still
	// carry the vote. Empty: every problem takes the three-habit mix.
	DirectEndings []string
	// exclude holds problem texts never trained on (the evaluation set).
	exclude  map[string]bool
	template selfinstruct.Template
}

// NewCorpus makes a corpus whose problems avoid every text in exclude.
func NewCorpus(src Source, seed uint64, selfInstructShare float64, exclude []evaluate.Problem) *Corpus {
	c := &Corpus{Source: src, Seed: seed, SelfInstructShare: selfInstructShare, Shots: selfinstruct.DefaultShots,
		MinNew: 3, MaxNew: 6, exclude: map[string]bool{}, template: selfinstruct.DefaultTemplate()}
	for _, p := range exclude {
		c.exclude[normText(p.Problem)] = true
	}
	return c
}

func normText(s string) string { return strings.Join(strings.Fields(s), " ") }

// Kind says which job a document teaches.
type Kind uint8

const (
	Solve        Kind = iota // chat: system + problem → solution ending in \boxed{answer}
	SelfInstruct             // chat: self-instruction prompt → new numbered problems
)

// Conversation is one document before tokenisation: the messages before the assistant turn and the
// assistant's text (without the end-of-turn token).
type Conversation struct {
	Kind      Kind
	Messages  []chat.Message
	Assistant string
}

// problem draws the j-th problem of document i, skipping excluded texts.
func (c *Corpus) problem(i uint64, j int) evaluate.Problem {
	level := 0
	if len(c.LevelWeights) > 0 {
		var total float64
		for _, w := range c.LevelWeights {
			total += w
		}
		u := float64(mix(c.Seed, i, uint64(j), 0x1e7e1)>>11) / (1 << 53) * total
		for level = 1; level < len(c.LevelWeights) && u >= c.LevelWeights[level-1]; level++ {
			u -= c.LevelWeights[level-1]
		}
	}
	for attempt := uint64(0); ; attempt++ {
		p := c.Source(mix(c.Seed, i, uint64(j), attempt), level)
		if !c.exclude[normText(p.Problem)] {
			return p
		}
	}
}

// Conversation returns document i.
func (c *Corpus) Conversation(i uint64) Conversation {
	r := rand.New(rand.NewPCG(c.Seed, i))
	if r.Float64() >= c.SelfInstructShare {
		p := c.problem(i, 0)
		sol := p.Solution
		// No draw at shares 0, so corpora of one style stay what they were.
		if c.DirectShare > 0 || c.ListShare > 0 {
			u := r.Float64()
			if len(c.DirectEndings) > 0 && !slices.Contains(c.DirectEndings, QuestionEnding(p.Problem)) {
				// The same draw, mapped past the direct share: list and steps keep their ratio.
				u = c.DirectShare + u*(1-c.DirectShare)
			}
			switch {
			case u < c.DirectShare:
				sol = directAnswer(sol)
			case u < c.DirectShare+c.ListShare:
				sol = asList(sol)
			}
		}
		return Conversation{Kind: Solve, Messages: []chat.Message{
			{Role: "system", Content: evaluate.SystemPrompt}, {Role: "user", Content: p.Problem}},
			Assistant: sol}
	}
	nNew := c.MinNew + r.IntN(c.MaxNew-c.MinNew+1)
	examples := make([]string, c.Shots)
	for j := range examples {
		examples[j] = selfinstruct.NormalizeExample(c.problem(i, j).Problem)
	}
	pr := c.template.Render(examples)
	// The assistant turn repeats the number the prompt ends with ("9. …\n10. …"): the official parser
	// drops any text before the first "N. ", so a turn that began mid-item would lose its first problem.
	var b strings.Builder
	for j := range nNew {
		if j > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.Itoa(c.Shots + 1 + j))
		b.WriteString(". ")
		b.WriteString(selfinstruct.NormalizeExample(c.problem(i, c.Shots+j).Problem))
	}
	return Conversation{Kind: SelfInstruct, Messages: []chat.Message{
		{Role: "system", Content: pr.System}, {Role: "user", Content: pr.User}}, Assistant: b.String()}
}

// directAnswer is a solution's last line when that line holds the boxed answer, else the solution.
func directAnswer(sol string) string {
	last := sol[strings.LastIndexByte(sol, '\n')+1:]
	if strings.Contains(last, `\boxed{`) {
		return last
	}
	return sol
}

// QuestionEnding is the last word of a problem, lower-cased, without digits or punctuation ("" if it has
// no letters): the word a question ends on, right before the answer begins, so a model reads it easily.
func QuestionEnding(problem string) string {
	end := strings.LastIndexFunc(problem, isLetter)
	start := strings.LastIndexFunc(problem[:end+1], func(r rune) bool { return !isLetter(r) }) + 1
	return strings.ToLower(problem[start : end+1])
}

func isLetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

// stepLabel is a worked solution's step label at the start of a line.
var stepLabel = regexp.MustCompile(`(?m)^Step (\d+): `)

// asList writes a solution's "Step k: " labels as "k) ".
func asList(sol string) string { return stepLabel.ReplaceAllString(sol, "$1) ") }

// Texts yields the text of documents [0, n) for tokenizer training: each message and assistant turn
// as its own sequence, without the template's special tokens.
func (c *Corpus) Texts(n int) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := range uint64(n) {
			conv := c.Conversation(i)
			for _, m := range conv.Messages {
				if !yield(m.Content) {
					return
				}
			}
			if !yield(conv.Assistant) {
				return
			}
		}
	}
}

// Doc is a tokenised document: the loss covers Ids[LossFrom:].
type Doc struct {
	Ids      []int32
	LossFrom int
	Kind     Kind
}

// Encoder tokenises conversations with a chat template.
type Encoder struct {
	Tok      *tokenizer.Tokenizer
	Template chat.Template
	Options  chat.Options
	// ProblemLoss extends a solving document's loss to the problem text of its user turn: the same
	// forward pass then also teaches the style of the world's problems, which self-instruction needs,
	// at no extra compute.
	ProblemLoss bool
	imEnd       int32
}

// NewEncoder makes an encoder with serl's ChatML template.
func NewEncoder(tok *tokenizer.Tokenizer) (*Encoder, error) {
	tmpl, err := chat.ParseNamed("chatml", chat.ChatMLTemplate)
	if err != nil {
		return nil, err
	}
	id, ok := tok.TokenID("<|im_end|>")
	if !ok {
		return nil, fmt.Errorf("pretrain: tokenizer has no <|im_end|>")
	}
	return &Encoder{Tok: tok, Template: tmpl, Options: chat.Options{AddGenerationPrompt: true}, imEnd: id}, nil
}

// Encode renders the prompt exactly as generation will see it (template with the generation prompt),
// then appends the assistant text tokenised on its own and <|im_end|>, so training and generation cut
// the text at the same token boundary.
func (e *Encoder) Encode(conv Conversation) (Doc, error) {
	prompt, err := e.Template.Render(conv.Messages, e.Options)
	if err != nil {
		return Doc{}, err
	}
	ids := e.Tok.Encode(prompt, tokenizer.EncodeOptions{ParseSpecial: true})
	from := len(ids)
	if e.ProblemLoss && conv.Kind == Solve {
		if from, err = e.userStart(prompt, ids, conv.Messages[len(conv.Messages)-1].Content); err != nil {
			return Doc{}, err
		}
	}
	ids = append(ids, e.Tok.Encode(conv.Assistant, tokenizer.EncodeOptions{})...)
	ids = append(ids, e.imEnd)
	return Doc{Ids: ids, LossFrom: from, Kind: conv.Kind}, nil
}

// userStart is the index of the first token of the user turn's content in the prompt's tokens. The
// text before it ends with the template's "user\n", a pre-tokenizer boundary, so its tokens are a prefix
// of the whole prompt's; anything else is an error rather than a loss mask off by some tokens.
func (e *Encoder) userStart(prompt string, ids []int32, content string) (int, error) {
	at := strings.LastIndex(prompt, content)
	if at < 0 {
		return 0, fmt.Errorf("pretrain: the rendered prompt does not contain the user turn")
	}
	head := e.Tok.Encode(prompt[:at], tokenizer.EncodeOptions{ParseSpecial: true})
	if len(head) > len(ids) || !slices.Equal(head, ids[:len(head)]) {
		return 0, fmt.Errorf("pretrain: the prompt's tokens do not split at the user turn")
	}
	return len(head), nil
}

// mix hashes its arguments into one seed (SplitMix64 steps).
func mix(xs ...uint64) uint64 {
	var h uint64 = 0x243F6A8885A308D3
	for _, x := range xs {
		h ^= x + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)
		z := h
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		h = z ^ (z >> 31)
	}
	return h
}
