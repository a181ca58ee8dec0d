// Command helperimages builds the images of the tool's own helpers (the
// reverse proxy, the network probe) on the engine DOCKER_HOST names, or the
// local one, unless they are there already.
//
// .ci/run calls it before the tests, so that the one expensive build (the
// proxy compiles Caddy: minutes on a cold machine) runs once, alone, and
// before any test waits on it; every package's tests then find the images
// by their content-hash tags, as a user's second project does. Images of
// unchanged sources are reused from run to run.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/proxy"
	"github.com/moby/moby/client"
)

// timeout bounds the whole run: a cold Caddy build on two busy cores.
const timeout = 20 * time.Minute

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "helperimages:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e, err := engine.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer e.Close()
	for _, h := range []struct {
		name   string
		ensure func(context.Context, *client.Client) (string, error)
	}{
		{"reverse proxy", proxy.EnsureImage},
		{"network probe", check.EnsureProbe},
	} {
		t0 := time.Now()
		ref, err := h.ensure(ctx, e.API)
		if err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
		fmt.Printf("%-14s %s (%.1f s)\n", h.name, ref, time.Since(t0).Seconds())
	}
	return nil
}
