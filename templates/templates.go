// Package templates holds the Go templates that tasks/render fills in to
// make a deployment folder. They are embedded so that the runner needs no
// files beside its binary.
package templates

import (
	"embed"
	"io/fs"
)

//go:embed *.tmpl
var files embed.FS

// FS returns the embedded templates: compose.yml.tmpl (compose and swarm
// stack files), env.tmpl (.env files), deploy-all.sh.tmpl and
// test-all.sh.tmpl.
func FS() fs.FS { return files }
