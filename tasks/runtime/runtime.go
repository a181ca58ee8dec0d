// Package runtime runs a rendered stack on an engine: one interface, with
// one implementation per way of running it (compose, swarm), shared by the
// local pipeline (up) and by promotion. A new runtime, Kubernetes say, is
// one more implementation, not more branches in the callers.
//
// A runtime converges: Apply compares what runs with the release and
// changes only what differs. Where a reverse proxy publishes the ports
// (remote environments), a changed service's new container starts beside
// the old one, is gated on health, takes the traffic, and only then is the
// old one drained and removed: no request fails on the published ports.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Runtime runs releases of a stack on one engine.
type Runtime interface {
	// Name is "compose" or "swarm", for messages.
	Name() string
	// Plan says what Apply would do, changing nothing.
	Plan(ctx context.Context, rel *Release) (*Plan, error)
	// Apply converges the engine to rel and waits until every service is
	// healthy. On failure the services it could not bring up are named;
	// what ran before keeps running where the runtime can keep it.
	Apply(ctx context.Context, rel *Release) (*Plan, error)
	// Remove takes the stack down (volumes too when asked).
	Remove(ctx context.Context, rel *Release, volumes bool) error
	// Health observes the services of project as this runtime runs them:
	// containers of one engine, or the tasks of a swarm on every node.
	Health(project string) health.Source
	// Logs writes, line by line, what the units of project's service
	// printed, as o says (engine.LogOptions); line may be called from
	// several goroutines at once, one per unit.
	Logs(ctx context.Context, project, service string, o engine.LogOptions, line func(string)) error
	// Describe says, for doctor, in one line, how this runtime stands on
	// its engine; the error says what keeps it from running a release.
	Describe(ctx context.Context) (string, error)
	// Ships reports whether a file of a rendered release (its path in the
	// release folder) goes to the host; the others stay in this machine's
	// record of it.
	Ships(name string) bool
}

// Nodes is a runtime that schedules a stack over several machines (a
// swarm): each must hold the images of the tasks it may run, which promote
// sends it, and each is checked against the list. A runtime of one engine
// does not implement it.
type Nodes interface {
	// Nodes lists the machines, having checked that the engine can
	// schedule over them; self is the node of the engine itself.
	Nodes(ctx context.Context) (self string, nodes []swarm.Node, err error)
}

// ForHost is the runtime of a promoted environment's engine kind on eng:
// a swarm stack, or else a compose project driven by the compose CLI found
// here, isolated from the operator's environment. cliEnv is the whole
// environment the CLIs run with; traffic publishes the ports.
func ForHost(ctx context.Context, env *catalog.Environment, eng *engine.Engine, cliEnv []string, traffic Traffic) (Runtime, error) {
	if env.Engine == catalog.EngineSwarm {
		return &Swarm{Engine: eng, Env: cliEnv, Proxy: traffic}, nil
	}
	cli, err := compose.Detect(ctx)
	if err != nil {
		return nil, err
	}
	return &Compose{Engine: eng, CLI: cli, Env: cliEnv, Isolated: true, Proxy: traffic}, nil
}

// Release is what a runtime runs: the rendered files of one environment and,
// per service, what must run.
type Release struct {
	// ID names the release ("" for a local stack).
	ID string
	// Project is the compose project (or swarm stack) name.
	Project string
	Cat     *catalog.Catalog
	Env     *catalog.Environment
	// Dir is a local folder holding the rendered files the CLIs read.
	Dir string
	// Services, in start order (infrastructure first).
	Services []Service
	// HostAddr is where this machine reaches the ports the stack
	// publishes.
	HostAddr string
	// Printer gets the step lines (nil: silent).
	Printer *ui.Printer
	// Redact hides secret values in what is printed of the services'
	// output.
	Redact func(string) string
	// Secrets are the Docker secrets a swarm release mounts into its
	// services (render.SwarmSecretName); a compose runtime ignores them.
	Secrets []Secret
}

// Secret is a Docker secret of a swarm release.
type Secret struct {
	Name  string
	Value []byte
}

// Service is one service of a release.
type Service struct {
	Name string
	// Image is the reference it runs; ImageID what that is on the engine
	// ("" when unknown: then the config hash alone decides).
	Image, ImageID string
	// ImageName is how output names that image (engine.ImageName: the
	// content-hash tag build gave it); "" = its short ID.
	ImageName string
	// ConfigHash is the value of labels.ConfigHash rendered for it.
	ConfigHash string
	// ContainerPort and HostPort: HostPort 0 = not published.
	ContainerPort, HostPort int
	// HealthURL, when set, must answer 2xx for a service without a
	// healthcheck of its own.
	HealthURL string
	// Stateful services (named volumes) never run twice at once: they are
	// replaced stop-first.
	Stateful bool
	// DependsOn names the services it needs healthy before it starts.
	DependsOn []string
	// OneShot services run once: done, and fit, once exited with status
	// 0 (catalog.Catalog.OneShot).
	OneShot bool
}

// Action is what Apply does to a service.
type Action string

// Actions, in the words the output uses.
const (
	Keep    Action = "unchanged"
	Start   Action = "start"
	Replace Action = "replace"
	Heal    Action = "heal"
	Drop    Action = "remove"
)

// Change is what Apply does, or did, to one service, and why.
type Change struct {
	Service string
	Action  Action
	// Why, for Replace and Heal: "image 1a2b -> 3c4d", "configuration
	// changed", "exited (exit code 1)"...
	Why string
	// Old and New are the containers (or swarm services) before and
	// after; New is set once Apply made it.
	Old, New []string
	// Healthy is how long after the start of Apply the service was seen
	// healthy (0 when Apply did not wait for it).
	Healthy time.Duration
}

// Plan is the list of changes, in start order.
type Plan struct {
	Changes []Change
	// Took is how long Apply took.
	Took time.Duration
}

// Changed reports whether the plan changes anything.
func (p *Plan) Changed() bool {
	for _, c := range p.Changes {
		if c.Action != Keep {
			return true
		}
	}
	return false
}

// Count returns how many services get each action.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// actionWords are the actions in the output's words.
var actionWords = map[Action]string{Start: "started", Replace: "replaced", Heal: "healed", Drop: "removed", Keep: "unchanged"}

// Describe says what happened to the service and why: "replaced (image
// 1a2b3c -> 4d5e6f)", "healed (it was exited (exit code 137))",
// "started", "unchanged".
func (c Change) Describe() string {
	w := actionWords[c.Action]
	switch {
	case c.Why == "":
		return w
	case c.Action == Heal:
		return w + " (it was " + c.Why + ")"
	}
	return w + " (" + c.Why + ")"
}

// Summary says the plan in one line: "1 replaced (quality-fabric), 5
// unchanged".
func (p *Plan) Summary() string {
	var parts []string
	for _, a := range []Action{Start, Replace, Heal, Drop, Keep} {
		var names []string
		for _, c := range p.Changes {
			if c.Action == a {
				names = append(names, c.Service)
			}
		}
		if len(names) == 0 {
			continue
		}
		word := actionWords[a]
		if a == Keep {
			parts = append(parts, fmt.Sprintf("%d %s", len(names), word))
		} else {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", len(names), word, strings.Join(names, ", ")))
		}
	}
	if len(parts) == 0 {
		return "nothing to run"
	}
	return strings.Join(parts, ", ")
}

func (r *Release) printer() *ui.Printer {
	if r.Printer == nil {
		return ui.Plain(io.Discard)
	}
	return r.Printer
}

func (r *Release) redact(s string) string {
	if r.Redact == nil {
		return s
	}
	return r.Redact(s)
}

// output is where a CLI's output goes while it runs: each line, cleaned of
// escape sequences and with secrets hidden, is printed dimmed and indented
// as it arrives. Close it when the command has ended.
func (r *Release) output() *ui.LineWriter {
	p := r.printer()
	return ui.Lines(func(l string) {
		if l = strings.TrimRight(r.redact(ui.Clean(l)), " \t"); l != "" {
			p.Dim("    %s", l)
		}
	})
}

// redactError hides secrets in the output tail a failed CLI's error
// carries, and cleans it: that error is printed in full. err must be what
// the CLI's run returned, not yet wrapped (a wrapping error fixes its
// message when it is made).
func (r *Release) redactError(err error) error {
	var re *compose.RunError
	if errors.As(err, &re) {
		re.Tail = r.redact(ui.Clean(re.Tail))
	}
	return err
}

func (r *Release) service(name string) (Service, bool) {
	for _, s := range r.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}
