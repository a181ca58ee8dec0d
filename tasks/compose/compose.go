// Package compose finds the Docker Compose command line on this machine and
// runs it. Command lines are built by pure functions (UpStackArgs, StartArgs, ...)
// so they can be tested without Docker, and run with exec.CommandContext and
// an argument list: no shell ever sees a value from the catalog.
//
// Both generations are supported: the v2 plugin (`docker compose`) is
// preferred, the v1 standalone `docker-compose` (1.29, Python) is the
// fallback. Argument lists stick to what both understand.
package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EnvOverride names the environment variable that chooses the compose
// command instead of detection: "docker compose" or "docker-compose" (or
// any command line that behaves like one of them, e.g. a full path).
const EnvOverride = "DEPLOY_COMPOSE"

// CLI is a compose command line that was found to work.
type CLI struct {
	// Argv is the command without arguments: ["docker", "compose"] or
	// ["docker-compose"].
	Argv []string
	// Version is what `<argv> version --short` printed, without a leading
	// "v" (e.g. "2.40.3", "1.29.2").
	Version string
	// V2 is true for compose v2 or later, whichever way it is installed.
	V2 bool
}

// String is the command as a user would type it.
func (c *CLI) String() string { return strings.Join(c.Argv, " ") }

// detectTimeout bounds each `version` probe: a wedged docker CLI must not
// hang a deployment.
const detectTimeout = 20 * time.Second

// Detect finds the compose command to use. DEPLOY_COMPOSE, when set, is the
// only candidate; otherwise the v2 plugin is used if `docker compose
// version` answers, else a docker-compose on PATH. When none works the error
// says what to install.
func Detect(ctx context.Context) (*CLI, error) {
	if v := strings.TrimSpace(os.Getenv(EnvOverride)); v != "" {
		argv := strings.Fields(v)
		c, err := probe(ctx, argv)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w (unset it to detect compose automatically)", EnvOverride, v, err)
		}
		return c, nil
	}
	var reasons []string
	if _, err := exec.LookPath("docker"); err == nil {
		c, err := probe(ctx, []string{"docker", "compose"})
		if err == nil {
			return c, nil
		}
		reasons = append(reasons, "`docker compose`: "+err.Error())
	} else {
		reasons = append(reasons, "`docker` is not on PATH")
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("detect compose: %w", ctx.Err())
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		c, err := probe(ctx, []string{"docker-compose"})
		if err == nil {
			return c, nil
		}
		reasons = append(reasons, "`docker-compose`: "+err.Error())
	} else {
		reasons = append(reasons, "`docker-compose` is not on PATH")
	}
	return nil, fmt.Errorf("no Docker Compose found (%s): install the Compose v2 plugin "+
		"(Debian/Ubuntu: apt-get install docker-compose-plugin; others: https://docs.docker.com/compose/install/) "+
		"or docker-compose, or set %s to the compose command", strings.Join(reasons, "; "), EnvOverride)
}

// probe runs `<argv> version --short` and parses the answer. The answer of
// a standalone binary is cached by its path, size and mtime, because the
// Python v1 takes most of a second just to start.
func probe(ctx context.Context, argv []string) (*CLI, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s is not installed or not on PATH", argv[0])
	}
	key := ""
	if len(argv) == 1 {
		key = cacheKey(path)
		if v, ok := cachedVersion(key); ok {
			return newCLI(argv, v), nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, detectTimeout)
	defer cancel()
	args := append(append([]string(nil), argv[1:]...), "version", "--short")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s version --short: %w: %s", strings.Join(argv, " "), err, lastLines(out.Bytes(), 3))
	}
	v := parseVersion(out.String())
	if v == "" {
		return nil, fmt.Errorf("%s version --short printed no version: %q", strings.Join(argv, " "), out.String())
	}
	if key != "" {
		storeVersion(key, v)
	}
	return newCLI(argv, v), nil
}

func newCLI(argv []string, version string) *CLI {
	major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	return &CLI{Argv: append([]string(nil), argv...), Version: version, V2: major >= 2}
}

// parseVersion takes the last non-empty line (warnings may come first) and
// drops a leading "v".
func parseVersion(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	v := strings.TrimSpace(lines[len(lines)-1])
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		return ""
	}
	return v
}

func cacheKey(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s|%d|%d", path, fi.Size(), fi.ModTime().UnixNano())
}

func cacheFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "mage-deploy", "compose-version.json")
}

func cachedVersion(key string) (string, bool) {
	f := cacheFile()
	if key == "" || f == "" {
		return "", false
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", false
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return "", false
	}
	v, ok := m[key]
	return v, ok && v != ""
}

// storeVersion is best effort: a cache that cannot be written only costs
// time on the next call.
func storeVersion(key, version string) {
	f := cacheFile()
	if key == "" || f == "" {
		return
	}
	m := map[string]string{}
	if b, err := os.ReadFile(f); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	m[key] = version
	b, _ := json.Marshal(m)
	if os.MkdirAll(filepath.Dir(f), 0o755) != nil {
		return
	}
	tmp := f + ".tmp" + strconv.Itoa(os.Getpid())
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, f)
	}
}
