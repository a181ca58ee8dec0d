package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/render"
)

// TailLines is how many lines of output a RunError keeps.
const TailLines = 20

// RunError is a compose command that failed: the command line, how it
// failed, and the end of what it printed.
type RunError struct {
	Argv []string
	Err  error
	Tail string
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("`%s`: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Tail != "" {
		msg += "\n" + indent(e.Tail, "    ")
	}
	return msg
}

func (e *RunError) Unwrap() error { return e.Err }

// Exec runs a command line of the compose family in dir: one that Args,
// UpStackArgs and the other builders return (it starts with the CLI's Argv), or
// `docker stack` for swarm. env is added to the process
// environment; a key set there wins over the inherited one. It returns the
// combined output. On failure the error is a *RunError carrying the
// command and the last TailLines lines of output. Values in env are never
// put in the error.
func Exec(ctx context.Context, dir string, env []string, argv []string) ([]byte, error) {
	return run(ctx, dir, append(inherited(), env...), argv, nil)
}

// inherited is this process's environment as a compose CLI gets it:
// without render.DollarVar, which compose v2 would let win over the value
// a .env file gives it.
func inherited() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, render.DollarVar+"=") })
}

// ExecStream runs argv as Exec does and also writes its output to w as it
// comes, while the command runs, so that a slow or hanging `up` shows what
// compose is doing. w gets stdout and stderr interleaved, raw: the caller
// cleans and redacts it (ui.Lines, ui.Clean). Writes to w are never
// concurrent. The returned output and error are Exec's.
func ExecStream(ctx context.Context, dir string, env []string, argv []string, w io.Writer) ([]byte, error) {
	return run(ctx, dir, append(inherited(), env...), argv, w)
}

// ExecIsolated runs argv as Exec does, with exactly env as its environment
// and nothing of this process's: for commands run against a remote host,
// on files that came from it, where a variable of the operator's (a cloud
// credential, DOCKER_CONFIG, a credential helper) must neither be read
// nor be reachable by interpolation. See MinimalEnv.
func ExecIsolated(ctx context.Context, dir string, env []string, argv []string) ([]byte, error) {
	return run(ctx, dir, env, argv, nil)
}

// ExecIsolatedStream is ExecIsolated writing the output to w as it comes,
// as ExecStream does.
func ExecIsolatedStream(ctx context.Context, dir string, env []string, argv []string, w io.Writer) ([]byte, error) {
	return run(ctx, dir, env, argv, w)
}

// MinimalEnv is the environment ExecIsolated runs a CLI with: PATH and
// HOME of this process (the CLIs cannot start without them), a private
// empty docker configuration folder (no credential helper, no context,
// no proxy setting of the operator's), and extra, e.g. DOCKER_HOST.
func MinimalEnv(dockerConfig string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8",
		"DOCKER_CONFIG=" + dockerConfig}
	return append(env, extra...)
}

func run(ctx context.Context, dir string, env []string, argv []string, stream io.Writer) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("compose: empty command line")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	// Compose may leave a child holding the output pipe after being killed
	// on cancel; WaitDelay stops Run from waiting on it forever.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	var w io.Writer = &out
	if stream != nil {
		// One writer for both: exec.Cmd then writes from one goroutine
		// at a time, and the lines arrive in the order compose wrote them.
		w = io.MultiWriter(&out, stream)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.Bytes(), &RunError{Argv: append([]string(nil), argv...), Err: err, Tail: lastLines(out.Bytes(), TailLines)}
	}
	return out.Bytes(), nil
}

// lastLines returns at most n trailing non-empty lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
