// Package archtest holds no code: its test pins serl's import graph (docs/ARCHITECTURE.md, "Layers")
// by parsing every Go file of the repository, whatever its build tags.
package archtest
