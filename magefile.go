//go:build mage

// The Maestro deployment task runner. Every target lives in package tasks,
// where other projects import them from too; this file only pulls them in.
// Run `mage -l` for the list, `mage -h <target>` for one target's help, or
// `go run mage.go <target>` where mage is not installed.
package main

import (
	//mage:import
	_ "github.com/maestro-platform/deploy/tasks"
)
