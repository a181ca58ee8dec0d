// Command caddy is the reverse proxy in front of a remote environment's
// published ports: Caddy's core, its HTTP app and reverse_proxy, nothing
// else (no TLS automation plugins, no file server, no extra log encoders),
// so that the binary stays small and its attack surface with it.
//
// Beside Caddy's own modules it holds one, the "maestro" source of
// upstreams, which lets the deploy tool drain a container (drain.go).
//
// It lives under a folder whose name starts with "_" so that the go tool
// of the deploy module never builds it: Caddy is a dependency of this
// program alone, compiled in a throwaway module from caddy.mod and
// caddy.sum (see tasks/proxy and engine.GoImage).
package main

import (
	"fmt"
	"net"
	"os"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func main() {
	// The image is FROM scratch: no shell, no curl. Docker's healthcheck
	// runs this binary instead, and the admin API is disabled, so the
	// check is that every server accepts TCP connections.
	if len(os.Args) > 1 && os.Args[1] == "listening" {
		os.Exit(listening(os.Args[2:]))
	}
	// Run in the container by the deploy tool (engine exec), never by
	// Caddy: see drain.go.
	if len(os.Args) > 1 && os.Args[1] == "drain" {
		os.Exit(drain(os.Args[2:]))
	}
	caddycmd.Main()
}

// listening dials 127.0.0.1 on each port and returns 0 when all of them
// accept a connection, 1 (naming the first that does not) otherwise.
func listening(ports []string) int {
	if len(ports) == 0 {
		fmt.Fprintln(os.Stderr, "usage: caddy listening PORT...")
		return 2
	}
	for _, p := range ports {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", p), 2*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "port %s: %v\n", p, err)
			return 1
		}
		c.Close()
	}
	return 0
}
