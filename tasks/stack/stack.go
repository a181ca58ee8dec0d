// Package stack runs the local side of the pipeline for one environment of
// the catalog (dev by default): render the deployment folder, build the
// images, bring the stack up, test it, and inspect or remove it. Each step
// is a method of Stack; the Mage targets in package tasks call them.
package stack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/secrets"
	"github.com/maestro-platform/deploy/tasks/ui"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// Config says which catalog, environment and folder a Stack works on.
type Config struct {
	// Catalog is the services.toml path (DEPLOY_CATALOG, default ./services.toml).
	Catalog string
	// DeployDir overrides the environment's folder (DEPLOY_DIR).
	DeployDir string
	// Env is the environment to work on (default dev).
	Env string
	// Overwrite lets render replace hand-edited files, keeping backups
	// (DEPLOY_OVERWRITE=1).
	Overwrite bool
	// Out receives status lines (default: coloured standard output).
	Out *ui.Printer
}

// FromEnv reads the Config every target honours from the environment.
func FromEnv() Config {
	c := Config{Catalog: os.Getenv("DEPLOY_CATALOG"), DeployDir: os.Getenv("DEPLOY_DIR"),
		Env: os.Getenv("DEPLOY_ENV")}
	switch strings.ToLower(os.Getenv("DEPLOY_OVERWRITE")) {
	case "1", "true", "yes":
		c.Overwrite = true
	}
	return c
}

// Stack is one environment of a loaded catalog and its deployment folder.
type Stack struct {
	Cat *catalog.Catalog
	Env *catalog.Environment
	// Dir is the deployment folder.
	Dir string
	Out *ui.Printer
	cfg Config

	secretsOnce sync.Once
	secretsErr  error
}

// Open loads and validates the catalog named by cfg.
func Open(cfg Config) (*Stack, error) {
	if cfg.Catalog == "" {
		cfg.Catalog = catalog.DefaultFile
	}
	if cfg.Env == "" {
		cfg.Env = "dev"
	}
	if cfg.Out == nil {
		cfg.Out = ui.Stdout()
	}
	cat, err := catalog.Load(cfg.Catalog)
	if err != nil {
		return nil, err
	}
	env, err := cat.Env(cfg.Env)
	if err != nil {
		return nil, err
	}
	if env.Remote() {
		return nil, &UsageError{Msg: fmt.Sprintf("environment %q lives on %s: use `mage promote -env=%s` for it", env.Name, env.Host, env.Name)}
	}
	// The local pipeline hands DOCKER_HOST to the compose CLI, and compose
	// v1 reaches an ssh:// engine through paramiko, which accepts an
	// unknown host key with a mere warning.
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "ssh://") {
		return nil, &UsageError{Msg: fmt.Sprintf("DOCKER_HOST=%s: the local pipeline does not reach an engine over ssh, "+
			"where a host key could be accepted unchecked. Unset DOCKER_HOST for the local engine, or declare an "+
			"environment with host = %q and known_hosts in %s and use `mage promote -env=NAME` (its host key is always checked)",
			h, h, cat.File)}
	}
	if err := plainTCP(os.Getenv("DOCKER_HOST")); err != nil {
		return nil, err
	}
	dir := env.Dir
	if cfg.DeployDir != "" {
		dir = cfg.DeployDir
	}
	return &Stack{Cat: cat, Env: env, Dir: dir, Out: cfg.Out, cfg: cfg}, nil
}

// plainTCP refuses a local DOCKER_HOST=tcp:// that is neither loopback nor
// TLS with verification, as an environment's host is refused: the Docker
// API (root on that machine) and the local pipeline's secrets would cross
// the network in clear. TLS is what the Docker client and the CLIs agree
// on: DOCKER_TLS_VERIFY set and DOCKER_CERT_PATH given.
func plainTCP(h string) error {
	if !strings.HasPrefix(h, "tcp://") || os.Getenv("DOCKER_TLS_VERIFY") != "" && os.Getenv("DOCKER_CERT_PATH") != "" {
		return nil
	}
	if u, err := url.Parse(h); err == nil && catalog.Loopback(u.Hostname()) {
		return nil
	}
	return &UsageError{Msg: fmt.Sprintf("DOCKER_HOST=%s is plain-text tcp: the Docker API (root on that machine) and the "+
		"stack's secrets would cross the network unencrypted. Set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (the daemon runs "+
		"with --tlsverify), reach it on a loopback address, or unset DOCKER_HOST for the local engine", ui.Clean(h))}
}

// Secrets gives the catalog's services their secret values for the
// stack's environment (package secrets), once: the steps that render,
// start or check the stack call it first. A secret found nowhere is an
// error that names where it was looked for.
func (s *Stack) Secrets(ctx context.Context) error {
	s.secretsOnce.Do(func() {
		_, s.secretsErr = secrets.Resolve(ctx, s.Cat, s.Env)
	})
	return s.secretsErr
}

// Project is the compose project name of the stack.
func (s *Stack) Project() string { return s.Cat.Project.Name }

// HTTPHost is the address health checks reach published ports on.
func (s *Stack) HTTPHost() string {
	if b := s.Env.Bind; b != "" && b != "0.0.0.0" && b != "::" {
		return b
	}
	return "127.0.0.1"
}

func (s *Stack) engine(ctx context.Context) (*engine.Engine, error) {
	return engine.Connect(ctx, s.Env.Host)
}

// UsageError is a mistake in how the tool was called or configured.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ExitStatus is exitcode.Usage.
func (e *UsageError) ExitStatus() int { return exitcode.Usage }

// ErrPlanChanged is returned by Plan when render would change the folder.
var ErrPlanChanged = exitcode.New(exitcode.Changes, "render would change the deployment folder")

// SplitList splits a comma-separated argument, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func since(t time.Time) string { return ui.Seconds(time.Since(t)) }
