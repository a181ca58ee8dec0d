package proxy

import (
	"context"
	"embed"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/moby/moby/client"
)

// The proxy program is a minimal Caddy (core, HTTP app, reverse_proxy).
// Its sources live under _caddy, a folder the go tool skips: the program
// imports Caddy, which must not become a dependency of this module (every
// build of the deploy tool would compile it). Its go.mod and go.sum are
// stored as caddy.mod and caddy.sum because the go tool refuses to embed a
// folder holding a go.mod; `go generate` regenerates them (_caddy/tidy.sh).
//
//go:generate sh _caddy/tidy.sh

//go:embed _caddy/*.go
var caddySource embed.FS

//go:embed _caddy/caddy.mod
var caddyMod []byte

//go:embed _caddy/caddy.sum
var caddySum []byte

// ImageRepo is the repository of the proxy image on an engine; the tag is
// a hash of the program, its go.mod and go.sum and the engine's
// architecture.
const ImageRepo = "maestro-deploy/proxy"

// caddyModule is the module path in caddy.mod.
const caddyModule = "maestro-deploy/proxy"

// binary is the program's path in the image.
const binary = "caddy"

// EnsureImage returns the reference of the proxy image on the engine api
// talks to, building it there first when it is missing.
//
// The first build on a machine downloads Caddy's modules through the Go
// module proxy (GOPROXY) and compiles them: about 100 s on 2 cores, for a
// 48 MB binary. Later builds (another engine, another architecture) reuse
// the module and build caches; an engine that has the image is not asked to
// build again. ctx should allow for the cold build.
func EnsureImage(ctx context.Context, api *client.Client) (string, error) {
	return engine.EnsureGoImage(ctx, api, image())
}

// image describes the proxy image for engine.EnsureGoImage.
func image() engine.GoImage {
	return engine.GoImage{
		Name:    "reverse proxy",
		Repo:    ImageRepo,
		Source:  caddySource,
		Dir:     "_caddy",
		Module:  caddyModule,
		Package: ".",
		Binary:  binary,
		GoMod:   caddyMod,
		GoSum:   caddySum,
		// Root in the image; the container drops every capability but
		// NET_BIND_SERVICE (see Ensure).
		HashLabel: labels.Proxy,
	}
}
