package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Logs writes what the services of project printed to w, as o says: the
// services side by side, line by line, each line cleaned of terminal
// escapes and passed through redact; with more than one service each line
// starts with its service's name, as compose does. With o.Follow it goes
// on until ctx ends. A service that has nothing to show is an error,
// returned once the others are done.
func Logs(ctx context.Context, rt Runtime, project string, services []string, o engine.LogOptions, redact func(string) string, w io.Writer) error {
	width := 0
	for _, s := range services {
		width = max(width, len(s))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(services))
	for i, s := range services {
		wg.Go(func() {
			errs[i] = rt.Logs(ctx, project, s, o, func(line string) {
				line = redact(ui.Clean(line))
				mu.Lock()
				defer mu.Unlock()
				if len(services) > 1 {
					fmt.Fprintf(w, "%-*s | %s\n", width, s, line)
				} else {
					fmt.Fprintln(w, line)
				}
			})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// unitLogs writes the output of each unit to line, the units side by side.
func unitLogs(ctx context.Context, units []string, logs func(ctx context.Context, id string, w io.Writer) error, line func(string)) error {
	var wg sync.WaitGroup
	errs := make([]error, len(units))
	for i, id := range units {
		wg.Go(func() {
			lw := ui.Lines(line)
			errs[i] = logs(ctx, id, lw)
			lw.Close()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
