//go:build ignore

// The zero-install bootstrap: `go run mage.go <target>` works where mage is
// not installed.
package main

import (
	"os"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(mage.Main()) }
