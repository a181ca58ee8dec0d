package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Traffic is the reverse proxy that publishes a stack's ports in front of
// its containers (package proxy).
type Traffic interface {
	// Ensure makes the proxy serve routes, leaving a proxy that already
	// serves exactly them alone; with join set, the proxy is on that
	// network too (a swarm stack's, whose DNS names the healthy tasks).
	Ensure(ctx context.Context, routes []Route, join string) error
	// Attach puts a container behind the proxy, as one of the upstreams of
	// the service alias.
	Attach(ctx context.Context, containerID, alias string) error
	// Attached lists the containers behind the proxy.
	Attached(ctx context.Context) (map[string]bool, error)
	// Drain takes containers out of the proxy's rotation and waits, at
	// most timeout, until none of their requests is in flight; open says
	// what still was when timeout ran out ("" when nothing).
	Drain(ctx context.Context, ids []string, timeout time.Duration) (open string, err error)
	// PickUp is the longest the proxy takes to send traffic to a
	// container after Attach.
	PickUp() time.Duration
}

// Route is one published port of the proxy: ListenPort on the host to the
// service's containers on TargetPort.
type Route struct {
	Service                string
	ListenPort, TargetPort int
}

// Compose runs a release with the compose CLI on one engine, which it
// watches through the Engine API.
//
// Without a proxy (the local stack) the containers publish their ports
// themselves, and compose replaces a changed container in place. With one
// (remote environments), a changed service's new container is started
// beside the old one (compose's --scale with --no-recreate), gated on its
// health, put behind the proxy, and the old one is drained (out of the
// proxy's rotation, its requests in flight finished) and stopped gracefully
// only after the proxy sends traffic to the new one; a stateful service (named
// volumes) is replaced stop-first instead, as it cannot run twice.
type Compose struct {
	Engine *engine.Engine
	CLI    *compose.CLI
	// Env is the CLI's environment: added to this process's, or, with
	// Isolated, all of it (compose.MinimalEnv).
	Env      []string
	Isolated bool
	// Proxy publishes the ports; nil when the containers do.
	Proxy Traffic
	// StopTimeout is how long a replaced or removed container gets to
	// finish its requests after its stop signal; 0 leaves it to the
	// container's own stop_grace_period (the engine's 10s when the catalog
	// sets none).
	StopTimeout time.Duration
}

// Ships: a compose host runs the release from its folder, every file of it.
func (c *Compose) Ships(string) bool { return true }

// Name is "compose".
func (c *Compose) Name() string { return "compose" }

// Logs writes what the service's containers printed, running or not,
// testAll's probe and one-off containers left out.
func (c *Compose) Logs(ctx context.Context, project, service string, o engine.LogOptions, line func(string)) error {
	obs, err := c.Health(project).Observe(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, u := range obs[service].Units {
		ids = append(ids, u.ID)
	}
	if len(ids) == 0 {
		return fmt.Errorf("%s has no container in project %s on %s", service, project, c.Engine.Host)
	}
	out := &streams{line: line}
	for _, id := range ids {
		out.start(ctx, id, func(ctx context.Context, id string, w io.Writer) error { return c.Engine.Logs(ctx, id, o, w) })
	}
	if o.Follow {
		c.followNew(ctx, project, service, ids, out)
	}
	return out.wait()
}

// followPoll is how often logs -f looks for the service's new containers.
const followPoll = 2 * time.Second

// followNew adds to out every container of the service that appears after
// those of ids (a promote's replacement, a restart by compose), each
// followed from its first line, until ctx ends.
func (c *Compose) followNew(ctx context.Context, project, service string, ids []string, out *streams) {
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	whole := func(ctx context.Context, id string, w io.Writer) error {
		return c.Engine.Logs(ctx, id, engine.LogOptions{Follow: true}, w)
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		obs, err := c.Health(project).Observe(ctx)
		if err != nil {
			continue // the engine may be restarting: look again
		}
		for _, u := range obs[service].Units {
			if !seen[u.ID] {
				seen[u.ID] = true
				out.start(ctx, u.ID, whole)
			}
		}
	}
}

// Describe names the compose CLI that drives the engine from here.
func (c *Compose) Describe(ctx context.Context) (string, error) {
	if c.CLI == nil {
		return "", errors.New("no compose CLI: install the compose v2 plugin or docker-compose, or set " + compose.EnvOverride)
	}
	return fmt.Sprintf("%s %s here drives the engine", c.CLI, c.CLI.Version), nil
}

// Health observes the project's containers on the engine.
func (c *Compose) Health(project string) health.Source {
	return &health.Compose{Engine: c.Engine, Project: project}
}

// stream runs a compose command in the release's folder and shows its
// output ("Creating ...", "Recreating ...") while it runs, as rel.output
// does: a slow or hanging compose is seen as such, not as a frozen
// terminal.
func (c *Compose) stream(ctx context.Context, rel *Release, argv []string) error {
	w := rel.output()
	var err error
	if c.Isolated {
		_, err = compose.ExecIsolatedStream(ctx, rel.Dir, c.Env, argv, w)
	} else {
		_, err = compose.ExecStream(ctx, rel.Dir, c.Env, argv, w)
	}
	w.Close()
	return rel.redactError(err)
}

func (c *Compose) files() []string { return []string{render.ComposeFile} }

// running lists the project's service containers by service.
func (c *Compose) running(ctx context.Context, project string) (map[string][]engine.Container, error) {
	cs, err := health.Containers(ctx, c.Engine, project)
	if err != nil {
		return nil, err
	}
	out := map[string][]engine.Container{}
	for _, ct := range cs {
		if ct.Labels[labels.Probe] != "" || ct.Labels[labels.ComposeOneOff] == "True" || ct.Service == "" {
			continue
		}
		out[ct.Service] = append(out[ct.Service], ct)
	}
	return out, nil
}

// Plan compares the project's containers with the release.
func (c *Compose) Plan(ctx context.Context, rel *Release) (*Plan, error) {
	run, err := c.running(ctx, rel.Project)
	if err != nil {
		return nil, err
	}
	return plan(rel, run), nil
}

// plan decides each service's action from its containers: one that runs
// the release's image and configuration, healthy, is kept (extra ones are
// dropped); none is a start; otherwise a replace, or a heal when the
// configuration is right but the container is not.
func plan(rel *Release, run map[string][]engine.Container) *Plan {
	p := &Plan{}
	for _, s := range rel.Services {
		cs := run[s.Name]
		ch := Change{Service: s.Name}
		for _, ct := range cs {
			ch.Old = append(ch.Old, ct.ID)
		}
		var fit *engine.Container
		for i := range cs {
			ct := &cs[i]
			if ct.Labels[labels.ConfigHash] == s.ConfigHash && (s.ImageID == "" || ct.ImageID == s.ImageID) &&
				health.Judge(health.Observation{Units: []health.Unit{health.ContainerUnit(*ct)}, OneShot: s.OneShot}).Healthy {
				fit = ct
			}
		}
		switch {
		case len(cs) == 0:
			ch.Action = Start
		case fit != nil:
			ch.Action, ch.New = Keep, []string{fit.ID}
		default:
			ct := cs[len(cs)-1]
			switch {
			case s.ImageID != "" && ct.ImageID != s.ImageID:
				to := s.ImageName
				if to == "" {
					to = engine.ShortID(s.ImageID)
				}
				// The running image is named by its own labels (a container
				// carries its image's), as build named it.
				ch.Action, ch.Why = Replace, "image "+engine.ImageName(ct.Labels[labels.ContextHash], ct.ImageID)+" -> "+to
			case ct.Labels[labels.ConfigHash] != s.ConfigHash:
				ch.Action, ch.Why = Replace, "configuration changed"
			default:
				u := health.ContainerUnit(ct)
				ch.Action, ch.Why = Heal, u.State
				if u.Fatal != "" {
					// It may quote the healthcheck's output: plan and
					// apply print it.
					ch.Why = rel.redact(u.Fatal)
				}
			}
		}
		p.Changes = append(p.Changes, ch)
	}
	var gone []string
	for name := range run {
		if _, ok := rel.service(name); !ok {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		ch := Change{Service: name, Action: Drop, Why: "no longer in the catalog"}
		for _, ct := range run[name] {
			ch.Old = append(ch.Old, ct.ID)
		}
		p.Changes = append(p.Changes, ch)
	}
	return p
}

// Apply converges the project to the release.
func (c *Compose) Apply(ctx context.Context, rel *Release) (*Plan, error) {
	t0 := time.Now()
	if c.Proxy == nil {
		return c.applyDirect(ctx, rel, t0)
	}
	return c.applyProxied(ctx, rel, t0)
}

// applyDirect is the local stack: compose itself creates, recreates and
// removes, group by group in the order of the dependencies
// (startInOrder), while every service is waited for. The wait runs beside
// the starts, not after them: it tells the starter when a group's
// dependencies are ready, and it names a failing service, with its health
// output and log, within the environment's health_timeout, and stops the
// starts then.
func (c *Compose) applyDirect(ctx context.Context, rel *Release, t0 time.Time) (*Plan, error) {
	before, err := c.Plan(ctx, rel)
	if err != nil {
		return nil, err
	}
	// A live line per service from the start of compose up: the health
	// wait carries each on.
	live := startLive(rel.printer(), rel.Services, "starting")
	cctx, stopCompose := context.WithCancel(ctx)
	defer stopCompose()
	settled := make(chan error, 1)
	composed := make(chan error, 1)
	ready := newReadiness()
	go func() {
		err := c.startInOrder(cctx, rel, ready)
		settled <- err
		composed <- err
	}()
	res, werr := c.wait(ctx, rel, nil, live, health.Options{Settled: settled, Since: t0, Seen: ready.see})
	if werr != nil {
		stopCompose()
	}
	cerr := <-composed
	healthyAfter(before, res)
	switch {
	case werr != nil && (cerr == nil || anyStarted(res) || ctx.Err() != nil):
		// The health error names the service at fault; compose's own
		// error names a dependant, or is only its being stopped.
		return before, werr
	case cerr != nil:
		return before, fmt.Errorf("compose up in %s: %w", rel.Dir, cerr)
	}
	if err := crashpoint.Reached(ctx, "apply:started"); err != nil {
		return before, err
	}
	after, err := c.running(ctx, rel.Project)
	if err == nil {
		for i := range before.Changes {
			ch := &before.Changes[i]
			ch.New = nil
			for _, ct := range after[ch.Service] {
				ch.New = append(ch.New, ct.ID)
			}
		}
	}
	before.Took = time.Since(t0)
	return before, nil
}

// anyStarted reports whether some failed service had started: then its
// failure, not compose's error, explains what went wrong.
func anyStarted(res []health.Result) bool {
	for _, r := range res {
		if !r.Healthy && r.Started {
			return true
		}
	}
	return false
}

// startLive shows a live line per service, in state.
func startLive(p *ui.Printer, services []Service, state string) map[string]*ui.Activity {
	live := map[string]*ui.Activity{}
	for _, s := range services {
		live[s.Name] = p.Start(s.Name, state)
	}
	return live
}

// endLive ends the live lines that are still shown, each with why.
func endLive(live map[string]*ui.Activity, why string) {
	for _, a := range live {
		a.Done(ui.Skip, "%s", why)
	}
}

// wait waits until the services are healthy; only, when set, restricts a
// service to the given containers (the new ones of a replacement). live
// are the services' live lines, which the wait carries on and ends; opts
// adds to the release's deadline, printer and redaction.
func (c *Compose) wait(ctx context.Context, rel *Release, only map[string][]string, live map[string]*ui.Activity, opts health.Options) ([]health.Result, error) {
	defer endLive(live, "not waited for")
	var targets []health.Target
	for _, s := range rel.Services {
		if only != nil && only[s.Name] == nil {
			continue
		}
		targets = append(targets, health.Target{Service: s.Name, URL: s.HealthURL, DependsOn: s.DependsOn, OneShot: s.OneShot})
	}
	if len(targets) == 0 {
		return nil, nil
	}
	opts.Deadline, opts.Printer, opts.Redact, opts.Live = rel.Env.HealthDeadline(), rel.Printer, rel.Redact, live
	return health.Wait(ctx, &health.Compose{Engine: c.Engine, Project: rel.Project, Only: only}, targets, opts)
}

// healthyAfter records in the plan when each waited-for service was
// healthy, counted from the start of Apply (the wait's Since).
func healthyAfter(p *Plan, res []health.Result) {
	for i := range p.Changes {
		for _, r := range res {
			if r.Service == p.Changes[i].Service && r.Healthy {
				p.Changes[i].Healthy = r.After
			}
		}
	}
}

// applyProxied replaces without downtime on the published ports: see the
// type's documentation.
func (c *Compose) applyProxied(ctx context.Context, rel *Release, t0 time.Time) (*Plan, error) {
	p := rel.printer()
	run, err := c.running(ctx, rel.Project)
	if err != nil {
		return nil, err
	}
	pl := plan(rel, run)

	var routes []Route
	for _, s := range rel.Services {
		if s.HostPort != 0 {
			routes = append(routes, Route{Service: s.Name, ListenPort: s.HostPort, TargetPort: s.ContainerPort})
		}
	}
	if err := c.Proxy.Ensure(ctx, routes, ""); err != nil {
		return pl, err
	}

	// Start what is missing and, beside the old containers, the new ones of
	// what changed: one compose call for all of them.
	var side, stopFirst []string
	scale := map[string]int{}
	for _, ch := range pl.Changes {
		s, _ := rel.service(ch.Service)
		switch {
		case ch.Action == Start:
			side = append(side, ch.Service)
		case (ch.Action == Replace || ch.Action == Heal) && (s.Stateful || s.OneShot):
			// A one-shot too: scaled up beside its old container,
			// compose would run the old job again.
			stopFirst = append(stopFirst, ch.Service)
		case ch.Action == Replace || ch.Action == Heal:
			side = append(side, ch.Service)
			scale[ch.Service] = len(run[ch.Service]) + 1
		}
	}
	created := map[string][]string{}
	// A live line per service started from its compose call on, carried
	// on by the health wait.
	live := map[string]*ui.Activity{}
	defer endLive(live, "not started")
	if len(side) > 0 {
		p.Line(ui.Run, "start", "%s", startWhat(pl, side))
		for _, name := range side {
			live[name] = p.Start(name, "starting")
		}
		if err := c.stream(ctx, rel, c.CLI.StartArgs(rel.Project, c.files(), side, scale, false)); err != nil {
			c.discardNew(ctx, rel, run)
			return pl, fmt.Errorf("compose up on %s: %w", c.Engine.Host, err)
		}
	}
	for _, name := range stopFirst {
		p.Line(ui.Run, name, "stopping the old container before its replacement starts (it must not run twice)")
		live[name] = p.Start(name, "replacing")
		if err := c.stream(ctx, rel, c.CLI.StartArgs(rel.Project, c.files(), []string{name}, nil, true)); err != nil {
			return pl, fmt.Errorf("compose up %s on %s: %w", name, c.Engine.Host, err)
		}
	}
	after, err := c.running(ctx, rel.Project)
	if err != nil {
		return pl, err
	}
	for _, name := range append(slices.Clone(side), stopFirst...) {
		for _, ct := range after[name] {
			if !slices.ContainsFunc(run[name], func(o engine.Container) bool { return o.ID == ct.ID }) {
				created[name] = append(created[name], ct.ID)
			}
		}
		if len(created[name]) == 0 {
			c.discardNew(ctx, rel, run)
			return pl, fmt.Errorf("compose made no new container of %s on %s", name, c.Engine.Host)
		}
	}

	if err := crashpoint.Reached(ctx, "apply:started"); err != nil {
		return pl, err
	}
	// The new containers must be healthy before anything is switched.
	res, err := c.wait(ctx, rel, created, live, health.Options{Since: t0})
	healthyAfter(pl, res)
	if err != nil {
		c.discardNew(ctx, rel, run)
		return pl, err
	}

	if err := crashpoint.Reached(ctx, "apply:healthy"); err != nil {
		return pl, err
	}
	// Traffic: every healthy container of a published service goes behind
	// the proxy (kept ones too: a new proxy has none yet).
	attached, err := c.Proxy.Attached(ctx)
	if err != nil {
		return pl, err
	}
	switched := false
	for i := range pl.Changes {
		ch := &pl.Changes[i]
		s, ok := rel.service(ch.Service)
		if !ok {
			continue
		}
		if ids := created[ch.Service]; len(ids) > 0 {
			ch.New = ids
		}
		if s.HostPort == 0 || s.OneShot { // a finished job serves nothing
			continue
		}
		for _, id := range ch.New {
			if attached[id] {
				continue
			}
			if err := c.Proxy.Attach(ctx, id, s.Name); err != nil {
				return pl, err
			}
			switched = switched || len(ch.Old) > 0
		}
	}
	if switched {
		// Both old and new serve now; the old go once the proxy uses the
		// new.
		select {
		case <-time.After(c.Proxy.PickUp()):
		case <-ctx.Done():
			return pl, ctx.Err()
		}
	}

	if err := crashpoint.Reached(ctx, "apply:switched"); err != nil {
		return pl, err
	}
	// Remove what was replaced or dropped, all at once: out of the
	// proxy's rotation first, so that no new request meets a closing
	// listener, then, once their requests in flight are done, stopped
	// gracefully.
	var old []string
	for _, ch := range pl.Changes {
		for _, id := range ch.Old {
			if !slices.Contains(ch.New, id) {
				old = append(old, id)
			}
		}
	}
	if err := c.drain(ctx, rel, old, attached); err != nil {
		return pl, err
	}
	if err := c.stopAndRemove(ctx, old, false); err != nil {
		return pl, err
	}
	for _, ch := range pl.Changes {
		switch ch.Action {
		case Start:
			p.Line(ui.OK, ch.Service, "started")
		case Replace, Heal:
			p.Line(ui.OK, ch.Service, "replaced (%s): %s -> %s", ch.Why, shortIDs(ch.Old), shortIDs(ch.New))
		case Drop:
			p.Line(ui.OK, ch.Service, "removed (%s)", ch.Why)
		}
	}
	pl.Took = time.Since(t0)
	return pl, nil
}

// drain takes the containers ids that are behind the proxy out of its
// rotation and waits for their requests in flight, at most the
// environment's drain_timeout; one still running then is left to the
// container's graceful stop, and said. A drain that fails is said too and
// does not stop the swap: the new containers are serving, and the old
// ones' graceful stop still finishes what they hold (only a request that
// meets a closing listener may fail, as without the drain). Only an ended
// ctx (an interrupt) stops it.
func (c *Compose) drain(ctx context.Context, rel *Release, ids []string, attached map[string]bool) error {
	var behind []string
	for _, id := range ids {
		if attached[id] {
			behind = append(behind, id)
		}
	}
	if len(behind) == 0 {
		return nil
	}
	timeout := rel.Env.DrainDeadline()
	open, err := c.Proxy.Drain(ctx, behind, timeout)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		rel.printer().Line(ui.Warn, "drain", "%s could not be taken out of the proxy's rotation first (%v): stopping them gracefully now",
			shortIDs(behind), err)
		return nil
	}
	if open != "" {
		rel.printer().Line(ui.Warn, "drain", "requests still in flight to %s after drain_timeout %s (%s): stopping them gracefully now",
			shortIDs(behind), timeout, open)
	}
	return nil
}

func startWhat(pl *Plan, names []string) string {
	var starts, sides []string
	for _, ch := range pl.Changes {
		if !slices.Contains(names, ch.Service) {
			continue
		}
		if ch.Action == Start {
			starts = append(starts, ch.Service)
		} else {
			sides = append(sides, ch.Service)
		}
	}
	switch {
	case len(sides) == 0:
		return fmt.Sprintf("starting %d service(s)", len(starts))
	case len(starts) == 0:
		return fmt.Sprintf("new containers beside the old ones of %s", joinNames(sides))
	}
	return fmt.Sprintf("starting %s; new containers beside the old ones of %s", joinNames(starts), joinNames(sides))
}

func joinNames(n []string) string {
	if len(n) > 4 {
		return fmt.Sprintf("%s and %d more", joinNames(n[:3]), len(n)-3)
	}
	out := ""
	for i, s := range n {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}

func shortIDs(ids []string) string {
	var s []string
	for _, id := range ids {
		s = append(s, engine.ShortID(id))
	}
	if len(s) == 0 {
		return "-"
	}
	return joinNames(s)
}

// discardNew removes the containers a failed apply created, so that the
// old ones, still serving, are all that runs of each service.
func (c *Compose) discardNew(ctx context.Context, rel *Release, before map[string][]engine.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	after, err := c.running(ctx, rel.Project)
	if err != nil {
		return
	}
	var fresh []string
	for name, cs := range after {
		for _, ct := range cs {
			if !slices.ContainsFunc(before[name], func(o engine.Container) bool { return o.ID == ct.ID }) {
				fresh = append(fresh, ct.ID)
			}
		}
	}
	_ = c.stopAndRemove(ctx, fresh, false)
}

// stopAndRemove stops containers with their stop signal (a graceful
// shutdown: they finish what they serve) and removes them, in parallel,
// with their anonymous volumes when asked (a replaced container's are
// kept: compose hands them to its successor).
func (c *Compose) stopAndRemove(ctx context.Context, ids []string, anonVolumes bool) error {
	var timeout *int
	if c.StopTimeout > 0 {
		timeout = new(int(c.StopTimeout.Seconds()))
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			_, err := c.Engine.API.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: timeout})
			if err == nil || engine.IsNotFound(err) {
				_, err = c.Engine.API.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: anonVolumes})
			}
			if err != nil && !engine.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("remove old container %s: %w", engine.ShortID(id), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Remove takes the project down as compose down does: every container of
// the project stopped gracefully and removed, then its networks, and its
// volumes (named and anonymous) when asked. It goes through the engine, by
// the project's label, so that it needs no compose file: a host's copy of
// one is not to be trusted, and the project may be left by a release
// shipped from elsewhere.
func (c *Compose) Remove(ctx context.Context, rel *Release, volumes bool) error {
	cs, err := c.Engine.Containers(ctx, rel.Project)
	if err != nil {
		return err
	}
	var ids []string
	for _, ct := range cs {
		ids = append(ids, ct.ID)
	}
	if err := c.stopAndRemove(ctx, ids, volumes); err != nil {
		return err
	}
	byProject := client.Filters{}.Add("label", labels.ComposeProject+"="+rel.Project)
	nets, err := c.Engine.API.NetworkList(ctx, client.NetworkListOptions{Filters: byProject})
	if err != nil {
		return fmt.Errorf("networks of %s on %s: %w", rel.Project, c.Engine.Host, err)
	}
	var errs []error
	for _, n := range nets.Items {
		if _, err := c.Engine.API.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !engine.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", ui.Clean(n.Name), err))
		}
	}
	if !volumes {
		return errors.Join(errs...)
	}
	vols, err := c.Engine.API.VolumeList(ctx, client.VolumeListOptions{Filters: byProject})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("volumes of %s on %s: %w", rel.Project, c.Engine.Host, err))...)
	}
	for _, v := range vols.Items {
		if _, err := c.Engine.API.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !engine.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", ui.Clean(v.Name), err))
		}
	}
	return errors.Join(errs...)
}
