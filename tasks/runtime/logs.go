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

// streams writes the output of units side by side, each through a line
// splitter of its own into line, and gathers their errors. A unit removed
// meanwhile has simply ended.
type streams struct {
	line func(string)
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// logFunc writes one unit's output to w.
type logFunc func(ctx context.Context, id string, w io.Writer) error

// start streams unit id until from returns.
func (s *streams) start(ctx context.Context, id string, from logFunc) {
	s.wg.Go(func() {
		lw := ui.Lines(s.line)
		err := from(ctx, id, lw)
		lw.Close()
		if err != nil && !engine.IsNotFound(err) {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
		}
	})
}

// wait waits for every stream to end.
func (s *streams) wait() error {
	s.wg.Wait()
	return errors.Join(s.errs...)
}
