// Package gobuild holds the settings of every Go program this tool
// compiles: the targets (internal/magerun) and the helper images
// (tasks/engine). They are the sample services' prebuilds' settings too,
// so that on a fresh machine the standard library, most of a cold compile,
// is compiled once for all of them: the build cache keys each package by
// them. It imports nothing, for the bootstrap imports it.
package gobuild

const (
	// Static is the environment setting of a static binary, which a
	// FROM scratch image needs and which the targets share.
	Static = "CGO_ENABLED=0"
	// Trimpath keeps the builder's folders out of the binary, so that the
	// same sources give the same binary (and image) on every machine.
	Trimpath = "-trimpath"
	// Ldflags leave out the symbol table and DWARF, which nobody reads
	// here and which cost seconds of linking; stack traces keep their
	// function names and lines.
	Ldflags = "-s -w"
)
