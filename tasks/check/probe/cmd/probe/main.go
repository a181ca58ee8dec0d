// Command probe runs testAll's network checks from inside the stack's
// network. It has three modes:
//
//	probe '<json array of probe.Spec>'
//
// performs the checks all at once and prints a JSON array of probe.Outcome
// on stdout, then exits (0 once it has printed; failures are outcomes).
//
//	probe -text '<json array of probe.Spec>'
//
// performs the same checks and prints one line per outcome, in the order
// of the specs, for a shell without a JSON parser (the rendered
// test-all.sh):
//
//	ID<TAB>PASS<TAB>HTTP <status>
//	ID<TAB>FAIL<TAB><Outcome.Detail>
//
// Control characters (tabs, line breaks, escape sequences a service's body
// may hold) in the ID and the detail are written as spaces, so that every
// outcome is exactly one line of three fields. An empty array prints
// nothing and exits 0: how a caller tells this probe from an older one
// without -text, which exits 2 printing its usage.
//
// In both modes a SIGTERM or an interrupt (docker stop, a caller's
// timeout) ends the checks still running, which are then reported as
// cancelled, instead of being ignored, as signals without a handler are by
// a container's first process.
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
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/maestro-platform/deploy/tasks/check/probe"
)

func main() {
	serve := flag.String("serve", "", "serve checks over HTTP on this address (token in $PROBE_TOKEN)")
	idle := flag.Duration("idle", 30*time.Minute, "with -serve: exit after this long without a request (0: never)")
	text := flag.Bool("text", false, "print one line per outcome (ID, PASS or FAIL, detail; tab-separated) instead of JSON")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: probe [-text] '<json array of specs>' | PROBE_TOKEN=... probe -serve ADDR [-idle D]")
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
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	outcomes := probe.RunAll(ctx, specs)
	var err error
	if *text {
		err = writeText(os.Stdout, outcomes)
	} else {
		err = json.NewEncoder(os.Stdout).Encode(outcomes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// writeText writes the outcomes as -text prints them: ID, PASS or FAIL, and
// "HTTP <status>" or the failure's detail, tab-separated, one line each.
func writeText(w io.Writer, outcomes []probe.Outcome) error {
	b := bufio.NewWriter(w)
	for _, o := range outcomes {
		verdict, detail := "PASS", "HTTP "+strconv.Itoa(o.Status)
		if !o.OK {
			verdict, detail = "FAIL", o.Detail
			if detail == "" {
				detail = "failed without a reason"
			}
		}
		fmt.Fprintf(b, "%s\t%s\t%s\n", oneField(o.ID), verdict, oneField(detail))
	}
	return b.Flush()
}

// oneField turns every control character of s into a space: a field of a
// -text line holds no tab or line break, and nothing a terminal would
// take for a command.
func oneField(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
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
