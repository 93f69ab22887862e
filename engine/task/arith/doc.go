// Package arith is serl's built-in task: a small world of arithmetic word
// problems with exact answers, on which `serl train` runs SeRL end to end on
// a laptop.
//
// The world is a grammar of sentence templates (grammar.go) over a small
// lexicon (words.go): people and agents hold quantities of objects, gain and
// lose them, give them to each other, pack them into containers, share them,
// buy them at unit prices and produce them at rates; questions ask for a
// holding, a sum, a difference, a share, a remainder, a cost or a time; bare
// arithmetic expressions are problems too. Five levels grow in steps and in
// the size of numbers.
//
// The same templates drive both directions:
//   - Generate renders a structured problem it builds itself, computing the
//     answer and a short step-by-step solution as it goes;
//   - Solve (the checker) parses any text written in the world's language,
//     including sentences recombined, renamed, with made-up nouns or without
//     filler words, rebuilds the story and answers it, or refuses text that
//     is not a well-posed problem of the world.
//
// SeedSet and EvalSet are fixed, disjoint data sets committed under data/;
// Corpus generates labelled training sets; WriteSample prints samples.
package arith
