// Command probe runs testAll's network checks from inside the stack's
// network: it reads a JSON array of probe.Spec from its first argument,
// performs them all at once and prints a JSON array of probe.Outcome on
// stdout. It always exits 0 once it has printed; failures are outcomes.
//
// It ships in a FROM scratch image, because the sample services' images
// have no curl; see check.EnsureProbe.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/check/probe"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe '<json array of specs>'")
		os.Exit(2)
	}
	var specs []probe.Spec
	if err := json.Unmarshal([]byte(os.Args[1]), &specs); err != nil {
		fmt.Fprintln(os.Stderr, "probe: bad spec:", err)
		os.Exit(2)
	}
	// The caller bounds the container too; this keeps a wedged check from
	// holding the container forever if the caller has gone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := probe.Client()
	out := make([]probe.Outcome, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = probe.Do(ctx, c, s)
		}()
	}
	wg.Wait()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
