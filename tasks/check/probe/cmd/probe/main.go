// Command probe runs testAll's network checks from inside the stack's
// network. It has two modes:
//
//	probe '<json array of probe.Spec>'
//
// performs the checks all at once and prints a JSON array of probe.Outcome
// on stdout, then exits (0 once it has printed; failures are outcomes).
//
//	PROBE_TOKEN=secret probe -serve :8099 [-idle 30m]
//
// serves the same checks over HTTP (see probe.Server): a POST to /run of
// the JSON specs answers the JSON outcomes. It exits 0 after -idle without
// a request.
//
// It ships in a FROM scratch image, because the sample services' images
// have no curl; see check.EnsureProbe.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/maestro-platform/deploy/tasks/check/probe"
)

func main() {
	serve := flag.String("serve", "", "serve checks over HTTP on this address (token in $PROBE_TOKEN)")
	idle := flag.Duration("idle", 30*time.Minute, "with -serve: exit after this long without a request (0: never)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: probe '<json array of specs>' | PROBE_TOKEN=... probe -serve ADDR [-idle D]")
	}
	flag.Parse()
	if *serve != "" {
		os.Exit(runServer(*serve, *idle))
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var specs []probe.Spec
	if err := json.Unmarshal([]byte(flag.Arg(0)), &specs); err != nil {
		fmt.Fprintln(os.Stderr, "probe: bad spec:", err)
		os.Exit(2)
	}
	// The caller bounds the container too; this keeps a wedged check from
	// holding the container forever if the caller has gone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := json.NewEncoder(os.Stdout).Encode(probe.RunAll(ctx, specs)); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func runServer(addr string, idle time.Duration) int {
	token := os.Getenv("PROBE_TOKEN")
	if token == "" {
		fmt.Fprintln(os.Stderr, "probe: -serve needs a token in PROBE_TOKEN")
		return 2
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	// docker stop sends SIGTERM: finish the batch in flight, then exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s := &probe.Server{Token: token, Idle: idle}
	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	return 0
}
