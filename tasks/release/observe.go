package release

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/proxy"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// ProxyRow names the proxy's row in a status table.
const ProxyRow = "(proxy)"

// StatusRow is one container (or swarm task) of an environment as status
// shows it.
type StatusRow struct {
	Service string
	// State is the unit's state in words; Healthy its verdict.
	State   string
	Healthy bool
	Image   string
	// Release is the recorded release whose image and configuration the
	// unit runs ("" when none recorded here matches).
	Release string
	// Node is the swarm node it runs on ("" on a compose host).
	Node string
	// Up is how long it has run (0 when it does not).
	Up time.Duration
}

// Status prints a row per unit of each catalog service of the environment
// opts.Env, a row for a service without any, and one for the proxy: state,
// image, the release it belongs to, its node on a swarm, how long it has
// run. It reads the host and changes nothing, without the lock. It fails,
// naming them, when a service or the proxy is not running and healthy.
func Status(ctx context.Context, cat *catalog.Catalog, opts Options) ([]StatusRow, error) {
	t, st, err := lookState(ctx, cat, &opts, "status")
	if err != nil {
		return nil, err
	}
	defer t.Close()
	env := t.env
	obs, err := t.rt.Health(cat.Project.Name).Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", env.Name, err)
	}
	proxies, err := t.eng.ContainersLabeled(ctx, labels.Proxy, cat.Project.Name)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", env.Name, err)
	}
	owner := releaseOf(opts.LocalDeployDir, env.Name, st.Current)
	svcs := services(cat, env)
	now := time.Now()
	var rows []StatusRow
	var bad []string
	for _, s := range svcs {
		o := obs[s.Name]
		o.OneShot = s.OneShot
		if v := health.Judge(o); !v.Healthy {
			bad = append(bad, s.Name+" ("+v.State+")")
		}
		if len(o.Units) == 0 {
			rows = append(rows, StatusRow{Service: s.Name, State: "missing"})
			continue
		}
		for _, u := range o.Units {
			rows = append(rows, unitRow(s.Name, u, s.OneShot, owner(s.Name, u), now))
		}
	}
	var running bool
	for _, c := range proxies {
		u := health.ContainerUnit(c)
		r := unitRow(ProxyRow, u, false, "", now)
		// A promote starts the proxy once it listens on every port, before
		// the engine's first healthcheck of it: running and not unhealthy
		// is serving.
		r.Healthy = u.Running && u.Fatal == ""
		running = running || r.Healthy
		rows = append(rows, r)
	}
	if !running && len(svcs) > 0 {
		bad = append(bad, "the proxy (not running)")
		if len(proxies) == 0 {
			rows = append(rows, StatusRow{Service: ProxyRow, State: "missing"})
		}
	}
	printStatus(opts.Printer, cat, env, st.Current, rows)
	if len(bad) > 0 {
		return rows, fmt.Errorf("not running and healthy on %s: %s (`mage promote -env=%s` converges; `mage releases -env=%s` lists what is kept)",
			env.Name, strings.Join(bad, ", "), env.Name, env.Name)
	}
	opts.Printer.Line(ui.OK, "status", "%d services and the proxy running and healthy on %s", len(svcs), env.Name)
	return rows, nil
}

// unitRow is a unit's row, judged alone.
func unitRow(service string, u health.Unit, oneShot bool, release string, now time.Time) StatusRow {
	v := health.Judge(health.Observation{Units: []health.Unit{u}, OneShot: oneShot})
	r := StatusRow{Service: service, Healthy: v.Healthy, Image: ui.Clean(u.Image), Release: release, Node: u.Node, State: v.State}
	switch {
	case v.Fatal != "":
		r.State = v.Fatal
	case v.Healthy && u.Health != "":
		r.State = "running (healthy)"
	}
	if u.Running && !u.Since.IsZero() {
		r.Up = now.Sub(u.Since).Round(time.Second)
	}
	return r
}

// releaseOf returns which release recorded here a service's unit belongs
// to: the current one when its image and configuration match, else the
// newest that matches.
func releaseOf(deployDir, env, current string) func(service string, u health.Unit) string {
	ids := record.Releases(deployDir, env)
	recs := map[string]*record.Release{}
	for _, id := range ids {
		if r, _, err := record.LoadRelease(deployDir, env, id); err == nil {
			recs[id] = r
		}
	}
	slices.Reverse(ids)
	if recs[current] != nil {
		ids = append([]string{current}, ids...)
	}
	return func(service string, u health.Unit) string {
		for _, id := range ids {
			r := recs[id]
			if r == nil || u.ConfigHash == "" || r.Hashes[service] != u.ConfigHash {
				continue
			}
			if u.ImageID != "" && r.ImageIDs[service] != u.ImageID {
				continue
			}
			return id
		}
		return ""
	}
}

func printStatus(p *ui.Printer, cat *catalog.Catalog, env *catalog.Environment, current string, rows []StatusRow) {
	nodes := slices.ContainsFunc(rows, func(r StatusRow) bool { return r.Node != "" })
	head := []string{"SERVICE", "STATE", "IMAGE", "RELEASE"}
	if nodes {
		head = append(head, "NODE")
	}
	head = append(head, "UP")
	var table [][]string
	for _, r := range rows {
		state := p.Colorize(ui.OK, r.State)
		if !r.Healthy {
			state = p.Colorize(ui.Fail, r.State)
		}
		rel := r.Release
		switch {
		case rel == "":
			rel = "-"
		case rel == current:
			rel += " (current)"
		}
		row := []string{r.Service, state, dash(r.Image), rel}
		if nodes {
			row = append(row, dash(r.Node))
		}
		up := "-"
		if r.Up > 0 {
			up = r.Up.String()
		}
		table = append(table, append(row, up))
	}
	if current == "" {
		current = "none"
	}
	p.Header("status of %s on %s (%s:%s), current release %s", cat.Project.Name, env.Name, displayHost(env), env.Dir, current)
	p.Table(head, table)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Logs prints what the services printed on the host of opts.Env, as o
// says (runtime.Logs: side by side, cleaned, the catalog's secrets and the
// current release's recorded ones hidden). With o.Follow it goes on until
// ctx ends. It reads the host and changes nothing, without the lock.
func Logs(ctx context.Context, cat *catalog.Catalog, opts Options, services []string, o engine.LogOptions) error {
	t, st, err := lookState(ctx, cat, &opts, "logs")
	if err != nil {
		return err
	}
	defer t.Close()
	redact := check.Redactor(cat)
	if _, dir, err := record.LoadRelease(opts.LocalDeployDir, t.env.Name, st.Current); err == nil {
		if vars, err := dotenv.Read(filepath.Join(dir, render.EnvFile)); err == nil {
			redact = check.Redactor(cat, recordedSecrets(vars)...)
		}
	}
	if err := runtime.Logs(ctx, t.rt, cat.Project.Name, services, o, redact, opts.Printer.Writer()); err != nil {
		return fmt.Errorf("logs %s: %w", t.env.Name, err)
	}
	return nil
}

// TestAll runs the catalog's checks against the host of opts.Env as a
// promote runs them once its release is up, printing each. It records
// nothing: promote's gate reads dev's testAll only. The error names every
// failed check.
func TestAll(ctx context.Context, cat *catalog.Catalog, opts Options) (*check.Report, error) {
	opts.defaults(cat)
	t, err := look(ctx, cat, opts.Env, "testAll")
	if err != nil {
		return nil, err
	}
	defer t.Close()
	t.p = opts.Printer
	rep, err := t.checks(ctx)
	if err != nil {
		return rep, fmt.Errorf("testAll %s: %w", t.env.Name, err)
	}
	opts.Printer.Line(ui.OK, "testAll", "%d checks passed on %s (%s)", rep.Passed, t.env.Name, displayHost(t.env))
	return rep, nil
}

// Down takes the project off the host of opts.Env: the proxy and its edge
// network first (no request reaches a stopping container), then the stack
// (its containers and networks, or the swarm stack), volumes only when
// asked. The releases and the audit log stay: the next promote starts from
// scratch, a rollback still has its releases. It holds the environment's
// lock and writes an audit record, like a promote.
func Down(ctx context.Context, cat *catalog.Catalog, opts Options, volumes bool) error {
	t0 := time.Now()
	t, lock, err := openHost(ctx, cat, &opts, "down", true)
	if err != nil {
		return err
	}
	defer t.Close()
	defer lock.Release()
	env, p := t.env, opts.Printer
	audit := newAudit(ctx, cat, env, "down", opts)
	t.tookOver(ctx, lock, audit)
	if st, err := t.fs.List(ctx); err == nil {
		audit.Previous = st.Current
	}
	err = t.down(ctx, volumes)
	audit.finish(err, t0, check.Redactor(cat), false)
	if err == nil {
		audit.Outcome = OutcomeDown
	} else {
		err = fmt.Errorf("down %s: %w", env.Name, err)
	}
	t.audit(ctx, audit)
	if err == nil {
		p.Line(ui.OK, "down", "%s is down on %s in %s; its releases and audit log are kept in %s (`mage promote -env=%s` starts it again)",
			cat.Project.Name, env.Name, ui.Seconds(time.Since(t0)), env.Dir, env.Name)
	}
	return err
}

// down removes the proxy, then the stack.
func (t *target) down(ctx context.Context, volumes bool) error {
	project := t.cat.Project.Name
	if err := proxy.Remove(ctx, t.eng.API, project); err != nil {
		return err
	}
	t.p.Line(ui.OK, "proxy", "removed, with its edge network")
	// testAll's probe server sits on the stack's network.
	if err := check.RemoveProbe(ctx, t.eng.API, project); err != nil {
		return err
	}
	if err := t.rt.Remove(ctx, &runtime.Release{Project: project, Cat: t.cat, Env: t.env, Printer: t.p}, volumes); err != nil {
		return err
	}
	what := "containers and networks removed, volumes kept"
	if volumes {
		what = "containers, networks and volumes removed"
	}
	t.p.Line(ui.OK, t.rt.Name(), "%s", what)
	return nil
}
