package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/maestro-platform/deploy/tasks/ui"
)

// CommandTimeout bounds a secrets_command: one that waits for a password
// on a terminal it does not have would otherwise hang every command.
const CommandTimeout = 60 * time.Second

// MaxOutput bounds what a secrets file or a secrets_command's standard
// output may hold: NAME=value lines are far smaller, and anything bigger
// is a mistake that should not be read into memory whole.
const MaxOutput = 1 << 20

// commandTimeout is CommandTimeout; the tests shorten it.
var commandTimeout = CommandTimeout

const dotenvHint = "write NAME=value lines; put a value holding $, # or spaces in single quotes: NAME='value'"

// readFile reads a secrets file. A missing file is no error (found is
// false); a file others may read or write, or that is not a regular file
// or not dotenv, is refused.
func readFile(env, path string) (vals map[string]string, found bool, err error) {
	fail := func(msg, hint string) (map[string]string, bool, error) {
		return nil, false, &SourceError{Env: env, Source: FromFile, Where: path, Msg: msg, Hint: hint}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return fail(unwrapPath(err), "make the file readable by this user, or point secrets_file elsewhere")
	case !fi.Mode().IsRegular():
		// Opening a FIFO would block, and a folder or device is no file
		// of secrets: refused before it is opened.
		return fail(fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()), "make it a plain file of NAME=value lines, mode 0600")
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(unwrapPath(err), "make the file readable by this user, or point secrets_file elsewhere")
	}
	defer f.Close()
	// The mode is checked on the file opened, not on what the path named
	// a moment before.
	if fi, err = f.Stat(); err != nil {
		return fail(unwrapPath(err), "")
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()), "make it a plain file of NAME=value lines, mode 0600")
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 && runtime.GOOS != "windows" {
		return fail(fmt.Sprintf("has mode %04o (%s): group or others may read or write it", perm, fi.Mode()),
			"chmod 600 "+path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxOutput+1))
	if err != nil {
		return fail(unwrapPath(err), "")
	}
	if len(b) > MaxOutput {
		return fail("is larger than 1 MB", dotenvHint)
	}
	vals, msg := parseDotenv(b)
	if msg != "" {
		return fail(msg, dotenvHint)
	}
	return vals, true, nil
}

// unwrapPath keeps the reason of a *fs.PathError, whose path the message
// names already.
func unwrapPath(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

var dotenvLine = regexp.MustCompile(`^line (\d+):`)

// parseDotenv reads NAME=value lines as compose reads a .env file. It
// returns what is wrong in words that hold no value: the parser's own
// errors quote the offending line, secret and all, so only the line
// number is kept. A value that refers to a variable ($X, ${X}) is refused
// rather than expanded: in a secret, a '$' is far more likely part of the
// value than a reference, and expanding it would silently change the
// secret.
func parseDotenv(b []byte) (map[string]string, string) {
	refers := false
	vals, err := dotenv.ParseWithLookup(bytes.NewReader(b), func(string) (string, bool) {
		// "Set, empty": an unset variable makes compose-go log a warning
		// that names it, and the name would be part of the secret.
		refers = true
		return "", true
	})
	switch {
	case err != nil:
		if m := dotenvLine.FindStringSubmatch(err.Error()); m != nil {
			return nil, "is not valid dotenv at line " + m[1] + " (the line is not shown: it may hold a secret)"
		}
		return nil, "is not valid dotenv (the problem is not shown: it may hold a secret)"
	case refers:
		return nil, `a value holds a '$' outside single quotes, or a line names a variable without '=': values are taken literally only in single quotes`
	}
	return vals, ""
}

// runCommand runs a secrets_command in dir, without a shell and without
// input, and reads its standard output as dotenv. On failure the error
// holds the last line of its standard error, with every value in known
// and every value of its standard output hidden; its standard output is
// never shown.
func runCommand(ctx context.Context, env, dir string, argv, known []string) (map[string]string, error) {
	line := commandLine(argv)
	fail := func(msg, hint string) error {
		return &SourceError{Env: env, Source: FromCommand, Where: line, Msg: msg, Hint: hint}
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	// A grandchild that keeps the pipes open must not keep Resolve
	// waiting once the command itself is gone.
	cmd.WaitDelay = 2 * time.Second
	stdout := &capped{limit: MaxOutput, full: cancel}
	stderr := &capped{limit: 64 << 10, keepTail: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()

	var execErr *exec.Error
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &execErr):
		return nil, fail(fmt.Sprintf("cannot run %q: %v", argv[0], execErr.Err),
			"install it, or give the program's path (relative to the catalog's folder)")
	case stdout.over:
		return nil, fail("printed more than 1 MB on its standard output", "it should print NAME=value lines and nothing else")
	case ctx.Err() != nil:
		return nil, fmt.Errorf("environment %q: secrets_command %s: %w", env, line, ctx.Err())
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return nil, fail(fmt.Sprintf("did not finish within %s", commandTimeout),
			"it runs without a terminal: unlock what it needs (gpg or ssh agent, vault login) first")
	case errors.As(err, &exitErr):
		why := "printed nothing on its standard error"
		if l := ui.TailLines(stderr.String(), 1); len(l) > 0 {
			why = "its standard error ends with: " + ui.Shorten(hide(ui.Clean(l[0]), append(known, outputValues(stdout.buf.Bytes())...)), 300)
		}
		return nil, fail(fmt.Sprintf("failed (%s); %s", exitErr.ProcessState, why), "run it by hand to see why; its standard output is never shown, as it holds secrets")
	case err != nil:
		return nil, fail(err.Error(), "")
	}
	vals, msg := parseDotenv(stdout.buf.Bytes())
	if msg != "" {
		return nil, fail("its standard output "+msg, dotenvHint)
	}
	return vals, nil
}

// outputValues guesses every value a command's standard output may hold,
// to hide them from its standard error: each parsed value, and when it
// does not parse, each line and what follows its first '='.
func outputValues(out []byte) []string {
	vs := []string{}
	if vals, msg := parseDotenv(out); msg == "" {
		for _, v := range vals {
			vs = append(vs, v)
		}
	}
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		vs = append(vs, l)
		if _, v, ok := strings.Cut(l, "="); ok {
			vs = append(vs, strings.Trim(strings.TrimSpace(v), `"'`))
		}
	}
	return vs
}

// hide replaces every non-empty value in s with "***", longest first so
// that a value holding another is hidden whole.
func hide(s string, values []string) string {
	vs := make([]string, 0, len(values))
	for _, v := range values {
		if v != "" {
			vs = append(vs, v)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v, "***")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// capped keeps at most limit bytes of what is written to it: the first
// ones (and sets over, calling full once, when more come), or with
// keepTail the last ones. It never fails a write, so that the command
// is never blocked on a pipe nobody reads.
type capped struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	limit    int
	keepTail bool
	over     bool
	full     func()
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keepTail {
		c.buf.Write(p)
		if extra := c.buf.Len() - c.limit; extra > 0 {
			c.buf.Next(extra)
		}
		return len(p), nil
	}
	if room := c.limit - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:max(room, 0)])
		if !c.over && c.full != nil {
			c.full()
		}
		c.over = true
		return len(p), nil
	}
	c.buf.Write(p)
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
