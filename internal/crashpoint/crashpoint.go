// Package crashpoint lets tests stop the runner at a named moment of its
// work, to interrupt it there (SIGINT, SIGKILL, a cut connection) and
// prove that running the command again converges: the interrupt tests
// choose their moments by phase, never by timing.
//
// A crash point is a call to Reached at a phase boundary. It does nothing
// unless the environment variable MAESTRO_CRASHPOINT names it; then it
// prints "crashpoint: NAME" on standard error and blocks until ctx ends,
// returning ctx's error, as a step interrupted there would.
package crashpoint

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// Env is the variable that names the crash point to stop at.
const Env = "MAESTRO_CRASHPOINT"

var (
	once sync.Once
	name string
)

// Reached stops at the named point when the environment asks for it (see
// the package documentation), and returns nil at once otherwise.
func Reached(ctx context.Context, point string) error {
	once.Do(func() { name = os.Getenv(Env) })
	if name == "" || name != point {
		return nil
	}
	fmt.Fprintf(os.Stderr, "crashpoint: %s\n", point)
	<-ctx.Done()
	return fmt.Errorf("stopped at crash point %s: %w", point, ctx.Err())
}
