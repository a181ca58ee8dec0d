//go:build ignore

// The zero-install bootstrap: `go run mage.go <target>` works where mage is
// not installed. It reuses the compiled targets for as long as the sources
// they were built from are unchanged, instead of letting mage ask `go build`
// every time (see internal/magerun).
package main

import (
	"os"

	"github.com/maestro-platform/deploy/internal/magerun"
)

func main() { os.Exit(magerun.Main(".", os.Args[1:], os.Stdout, os.Stderr)) }
