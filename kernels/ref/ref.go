// Package ref is the pure-Go reference of every serl op: plain loops, float64 accumulation, written for
// clarity, not speed. The conformance suite checks every native backend against it, and its forward
// functions are generic over float32 and float64 so that backward ops can be checked against finite
// differences computed in float64.
//
// Conventions follow csrc/serl.h: row-major tensors; gradient outputs accumulate (+=).
package ref

// Float is a reference element type.
type Float interface{ ~float32 | ~float64 }
