package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/tokenizer"
)

func init() {
	addCommand(command{name: "generate", summary: "sample continuations of a prompt", run: runGenerate})
	addCommand(command{name: "tokenize", summary: "text to token ids, or ids to text (--decode)", run: runTokenize})
}

// parseIDs reads "1,2,3".
func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("token id %q: not an integer", f)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no token ids")
	}
	return ids, nil
}

func loadTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	return tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
}

func runTokenize(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokenize", stderr)
	dir := fs.String("model", "", "model folder with tokenizer.json (default: the built-in model)")
	text := fs.String("text", "", "text to encode (may be empty)")
	decode := fs.String("decode", "", "comma-separated ids to decode instead")
	noSpecial := fs.Bool("no-special", false, "do not add the post-processor's special tokens (e.g. Llama's BOS)")
	plain := fs.Bool("plain", false, "treat special-token text in --text as plain text")
	skip := fs.Bool("skip-special", false, "with --decode: drop special tokens")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Whether a flag was given, not whether it is empty: the empty text is a valid input.
	set := explicit(fs)
	if set["text"] == set["decode"] {
		return usagef("give exactly one of --text or --decode")
	}
	var err error
	if *dir, _, err = modelOrBuiltin("model", *dir, stderr); err != nil {
		return err
	}
	tok, err := loadTokenizer(*dir)
	if err != nil {
		return err
	}
	if set["decode"] {
		var ids []int32
		if strings.TrimSpace(*decode) != "" {
			if ids, err = parseIDs(*decode); err != nil {
				return usagef("--decode: %v", err)
			}
		}
		s, err := tok.Decode(ids, *skip)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, s)
		return nil
	}
	ids := tok.Encode(*text, tokenizer.EncodeOptions{AddSpecial: !*noSpecial, ParseSpecial: !*plain})
	if ids == nil {
		ids = []int32{} // JSON [] rather than null
	}
	b, _ := json.Marshal(ids)
	fmt.Fprintln(stdout, string(b))
	return nil
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	var df deviceFlags
	df.register(fs)
	dir := fs.String("model", "", "Hugging Face model folder (default: the built-in model)")
	adapter := fs.String("adapter", "", "PEFT LoRA adapter folder over --model")
	prompt := fs.String("prompt", "", "prompt text (needs tokenizer.json)")
	idsFlag := fs.String("ids", "", "prompt as comma-separated token ids")
	promptMode := fs.String("prompt-mode", "", "raw: --prompt as is; chat: --prompt as a user turn of the model's chat template (default: the model's own, from its serl.json; chat for the built-in model; else raw)")
	useChat := fs.Bool("chat", false, "same as --prompt-mode chat")
	system := fs.String("system", "", "with chat: the system message (default: the model's own from its serl.json, else none)")
	maxNew := fs.Int("max-new-tokens", 128, "tokens to generate at most")
	minNew := fs.Int("min-new-tokens", 0, "tokens to generate at least (EOS is banned before)")
	temp := fs.Float64("temperature", 1, "sampling temperature; 0 is greedy")
	topP := fs.Float64("top-p", 1, "nucleus sampling mass (1: off)")
	topK := fs.Int("top-k", 0, "keep the k most likely tokens (0: off)")
	presence := fs.Float64("presence-penalty", 0, "subtracted from the logit of every token already generated")
	n := fs.Int("n", 1, "samples")
	batch := fs.Int("batch", 64, "samples decoded together, at most --n (0: the most the device's free memory holds, the default on a GPU)")
	seed := fs.Uint64("seed", 0, "random seed (same seed, same samples)")
	asJSON := fs.Bool("json", false, "one JSON line per sample: tokens, log-probs, text, finish reason")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*prompt == "") == (*idsFlag == "") {
		return usagef("give exactly one of --prompt or --ids")
	}
	switch {
	case *n < 1:
		return usagef("--n %d: want at least 1", *n)
	case *batch < 0:
		return usagef("--batch %d: want ≥ 0 (0: as many as the device's free memory holds)", *batch)
	case *maxNew < 1:
		return usagef("--max-new-tokens %d: want at least 1", *maxNew)
	case *minNew < 0 || *minNew > *maxNew:
		return usagef("--min-new-tokens %d: want 0 to --max-new-tokens (%d)", *minNew, *maxNew)
	case *temp < 0:
		return usagef("--temperature %v: want ≥ 0 (0 is greedy)", *temp)
	case !(*topP > 0 && *topP <= 1):
		return usagef("--top-p %v: want a probability mass in (0, 1] (1: off)", *topP)
	case *topK < 0:
		return usagef("--top-k %d: want ≥ 0 (0: off)", *topK)
	}
	var err error
	if *dir, _, err = modelOrBuiltin("model", *dir, stderr); err != nil {
		return err
	}
	set := explicit(fs)
	switch {
	case *useChat && set["prompt-mode"] && *promptMode != "chat":
		return usagef("--chat contradicts --prompt-mode %s", *promptMode)
	case *useChat:
		*promptMode = "chat"
	case set["prompt-mode"] && *promptMode != "raw" && *promptMode != "chat":
		return usagef("--prompt-mode %q: want raw or chat", *promptMode)
	case !set["prompt-mode"] && *prompt != "":
		pc, source, err := modelPrompt(*dir)
		if err != nil {
			return err
		}
		*promptMode = pc.Mode
		if pc.Mode == "chat" && !set["system"] && source != "the official default" {
			*system = pc.System // the system message it was trained with
		}
		fmt.Fprintf(stderr, "serl: prompt mode %s (from %s)\n", pc.Mode, source)
	}
	var tok *tokenizer.Tokenizer
	if _, err := os.Stat(filepath.Join(*dir, "tokenizer.json")); err == nil {
		if tok, err = loadTokenizer(*dir); err != nil {
			return err
		}
	}
	var ids []int32
	switch {
	case *idsFlag != "":
		if ids, err = parseIDs(*idsFlag); err != nil {
			return usagef("--ids: %v", err)
		}
	case tok == nil:
		return fmt.Errorf("%s has no tokenizer.json: give the prompt as --ids", *dir)
	default:
		text := *prompt
		add := true
		if *promptMode == "chat" {
			cfg, err := chat.LoadTokenizerConfig(filepath.Join(*dir, "tokenizer_config.json"))
			if err != nil {
				return err
			}
			tmpl, err := cfg.Template()
			if err != nil {
				return err
			}
			var msgs []chat.Message
			if *system != "" {
				msgs = append(msgs, chat.Message{Role: "system", Content: *system})
			}
			msgs = append(msgs, chat.Message{Role: "user", Content: text})
			if text, err = tmpl.Render(msgs, cfg.Options(true)); err != nil {
				return err
			}
			add = false // the template writes BOS itself: no second one
		}
		ids = tok.Encode(text, tokenizer.EncodeOptions{AddSpecial: add, ParseSpecial: *promptMode == "chat"})
	}
	d, m, done, err := openInference(df, *dir, *adapter, stderr)
	if err != nil {
		return err
	}
	defer done()
	sizing := func(b int) (generate.Config, error) {
		return generate.Size(m.Config, generate.Sizing{MaxPrompt: len(ids), MaxNew: *maxNew, MaxBatch: b, Prompts: 1})
	}
	b := min(*n, *batch)
	if *batch == 0 || d.Info().Backend == "cuda" && !set["batch"] {
		if b, err = fitEngineBatch(d, m, "--batch", *n, sizing, stderr); err != nil {
			return err
		}
	}
	cfg, err := sizing(b)
	if err != nil {
		return err
	}
	e, err := generate.New(m, cfg)
	if err != nil {
		return err
	}
	defer e.Free()
	req := generate.Request{Prompt: ids, N: *n, Params: generate.Params{MaxNewTokens: *maxNew, MinNewTokens: *minNew,
		Temperature: float32(*temp), TopP: float32(*topP), TopK: *topK, PresencePenalty: float32(*presence), Seed: *seed}}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var onToken func(int, int, int32)
	if !*asJSON && *n == 1 && tok != nil && isTerminal(stdout) {
		// Stream the text as it is drawn, holding back incomplete UTF-8.
		sd := tok.NewStreamDecoder(true)
		onToken = func(_, _ int, id int32) {
			s, err := sd.Push(id)
			if err != nil {
				s = fmt.Sprintf("[id %d: not a token]", id) // as in the sample's text (engine/generate)
			}
			w.WriteString(s)
			w.Flush()
		}
	}
	var detok generate.Detokenizer
	if tok != nil {
		detok = tok
	}
	out, err := e.Generate([]generate.Request{req}, detok, onToken)
	if err != nil {
		return err
	}
	for i, s := range out[0] {
		switch {
		case *asJSON:
			b, _ := json.Marshal(map[string]any{"sample": i, "tokens": s.Tokens, "logprobs": s.LogProbs, "text": s.Text, "finish": s.Finish})
			w.Write(append(b, '\n'))
		case onToken != nil:
			w.WriteString("\n")
		case tok != nil:
			if *n > 1 {
				fmt.Fprintf(w, "--- sample %d (%s)\n", i, s.Finish)
			}
			fmt.Fprintln(w, s.Text)
		default:
			b, _ := json.Marshal(s.Tokens)
			fmt.Fprintln(w, string(b))
		}
	}
	st := e.Stats()
	fmt.Fprintf(stderr, "serl: %d tokens in %.2fs (%.1f tokens/s), %d prefill(s)\n", st.GeneratedTokens,
		(st.PrefillTime + st.DecodeTime + st.SampleTime).Seconds(), st.TokensPerSecond(), st.Prefills)
	return nil
}

// isTerminal reports whether w is a character device (a terminal), where streaming makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
