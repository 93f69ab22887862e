// Package selfinstruct is SeRL's self-instruction front end (docs/SERL.md §2):
// it builds the few-shot prompts that ask the model for new problems, parses
// the numbered list the model returns, applies the official rule filters and
// rejects problems too similar (ROUGE-L F1 > 0.7) to the pool of seed,
// pending and previously accepted problems.
//
// Parsing and filtering reproduce the official Python (re, str methods,
// rouge_score) to the character; testdata/python_golden.json holds CPython's
// answers on adversarial inputs and the tests compare against it. The one
// deliberate difference is capitalisation (docs/SERL.md D2): by default only the
// first character is changed; CapitalizePython restores str.capitalize().
//
// Rendering the prompt through a chat template and tokenising it are the
// caller's job; Builder.Build takes a callback that says whether a prompt
// fits the length budget and drops examples until it does.
package selfinstruct
