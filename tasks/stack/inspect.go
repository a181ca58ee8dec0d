package stack

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// PrepareTestAll builds what testAll will need and the engine may lack
// (the network probe's image), for deployAll to run beside up.
func (s *Stack) PrepareTestAll(ctx context.Context) error {
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	return check.PrepareProbe(ctx, s.Cat, eng.API)
}

// TestAll runs every check of the catalog against the running stack, prints
// the table, writes the reports and records the result for promote's gate.
func (s *Stack) TestAll(ctx context.Context) error {
	s.Out.Header("testAll %s", s.Env.Name)
	if err := s.Secrets(ctx); err != nil {
		return err
	}
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	hashes, views, err := s.catalogNow()
	if err != nil {
		return err
	}
	s.warnDrift("testAll", s.renderDrift(hashes, views),
		"testAll checks what runs, and promote refuses it until `mage deployAll` (or `mage render`, `mage up`, `mage testAll`)")
	rep, runErr := check.Run(ctx, s.Cat, check.Target{Env: s.Env, Project: s.Project(),
		HostAddr: s.HTTPHost(), API: eng.API, Health: s.runtime(eng, nil).Health(s.Project()), ReuseProbe: true},
		check.Options{Printer: s.Out, Secrets: check.Secrets(s.Cat)})
	if rep == nil {
		return runErr
	}
	if err := crashpoint.Reached(ctx, "testall:before-reports"); err != nil {
		return err
	}
	if err := check.WriteReports(s.Dir, rep); err != nil {
		return err
	}
	rec := s.testRecord(rep, hashes, views)
	rec.Passed = runErr == nil
	if err := record.WriteTest(s.Dir, rec); err != nil {
		return err
	}
	return runErr
}

// testRecord is what testAll vouches for: per service whose container it
// checked, the image ID and config hash the engine reported for that
// container, and the configuration that hash stands for, when known: the
// catalog's now (hashes, views), or what the last render rendered from.
func (s *Stack) testRecord(rep *check.Report, hashes map[string]string, views map[string]record.View) record.Test {
	rec := record.Test{Env: s.Env.Name, Project: s.Project(), Images: map[string]string{}, Hashes: map[string]string{},
		Config: map[string]record.View{record.ProjectKey: views[record.ProjectKey]}, At: time.Now().UTC()}
	rendered, err := record.ReadRendered(s.Dir)
	if err != nil || rendered.Env != s.Env.Name {
		rendered = record.Rendered{}
	}
	for _, r := range rep.Results {
		if r.Kind != check.KindContainer || len(r.Units) == 0 {
			continue
		}
		u := r.Units[0]
		same := u.ImageID != ""
		for _, o := range r.Units[1:] {
			same = same && o.ImageID == u.ImageID && o.ConfigHash == u.ConfigHash
		}
		if !same {
			continue // containers that differ: none of them is vouched for
		}
		rec.Images[r.Service], rec.Hashes[r.Service] = u.ImageID, u.ConfigHash
		switch {
		case u.ConfigHash == hashes[r.Service]:
			rec.Config[r.Service] = views[r.Service]
		case u.ConfigHash != "" && u.ConfigHash == rendered.Hashes[r.Service]:
			rec.Config[r.Service] = rendered.Config[r.Service]
		}
	}
	return rec
}

// containers connects to the engine and lists the stack's service
// containers (testAll's probe left out). The caller closes the engine.
func (s *Stack) containers(ctx context.Context) (*engine.Engine, []engine.Container, error) {
	eng, err := s.engine(ctx)
	if err != nil {
		return nil, nil, err
	}
	all, err := health.Containers(ctx, eng, s.Project())
	if err != nil {
		eng.Close()
		return nil, nil, err
	}
	cs := all[:0]
	for _, c := range all {
		if c.Labels[labels.Probe] == "" {
			cs = append(cs, c)
		}
	}
	return eng, cs, nil
}

// Summary prints deployAll's closing table: one row per service.
func (s *Stack) Summary(ctx context.Context) error {
	eng, cs, err := s.containers(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	byService := map[string]engine.Container{}
	for _, c := range cs {
		byService[c.Service] = c
	}
	var rows [][]string
	for _, svc := range s.Cat.All() {
		c := byService[svc.Name]
		port := "-"
		if p, ok := svc.HostPort(s.Env.Ports); ok {
			port = fmt.Sprint(p)
		}
		rows = append(rows, []string{svc.Name, s.Cat.ImageRef(svc), port, s.state(c), session.happened(svc.Name)})
	}
	s.Out.Header("deployAll %s: %s", s.Env.Name, s.Dir)
	s.Out.Table([]string{"SERVICE", "IMAGE", "PORT", "STATE", "THIS RUN"}, rows)
	return nil
}

// judge is the one judgement of package health on a service's container
// (up, promotion and testAll judge the same way).
func (s *Stack) judge(c engine.Container) health.Verdict {
	return health.Judge(health.Observation{Units: []health.Unit{health.ContainerUnit(c)}, OneShot: s.Cat.OneShot(c.Service)})
}

// healthy reports whether the container runs and is healthy (or, for a
// one-shot service, completed).
func (s *Stack) healthy(c engine.Container) bool { return s.judge(c).Healthy }

func (s *Stack) state(c engine.Container) string {
	if c.ID == "" {
		return s.Out.Colorize(ui.Fail, "missing")
	}
	v := s.judge(c)
	switch {
	case v.Healthy && c.Health != "":
		return s.Out.Colorize(ui.OK, "running (healthy)")
	case v.Healthy && c.State == "running":
		return s.Out.Colorize(ui.OK, "running")
	case v.Healthy:
		return s.Out.Colorize(ui.OK, v.State)
	case v.Fatal != "":
		return s.Out.Colorize(ui.Fail, v.Fatal)
	}
	return s.Out.Colorize(ui.Warn, v.State)
}

// Status prints a row per catalog service, one without a container
// included, and a row per container of the project the catalog no longer
// names. It fails, naming them, when any catalog service is not running
// and healthy.
func (s *Stack) Status(ctx context.Context) error {
	eng, cs, err := s.containers(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	byService := map[string][]engine.Container{}
	for _, c := range cs {
		byService[c.Service] = append(byService[c.Service], c)
	}
	var rows [][]string
	var bad []string
	row := func(name string, c engine.Container, note string) {
		health, ports, uptime := "-", "-", "-"
		if c.Health != "" && c.State == "running" {
			health = c.Health // a stopped container keeps its last, stale, health
		}
		var ps []string
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				ps = append(ps, fmt.Sprintf("%s:%d->%d", p.HostIP, p.HostPort, p.ContainerPort))
			}
		}
		if len(ps) > 0 {
			ports = strings.Join(ps, ",")
		}
		if c.State == "running" && !c.StartedAt.IsZero() {
			uptime = time.Since(c.StartedAt).Round(time.Second).String()
		}
		state := s.state(c)
		if note != "" {
			state = s.Out.Colorize(ui.Warn, note)
		}
		image := c.Image
		if image == "" {
			image = "-"
		}
		rows = append(rows, []string{name, state, health, ports, image, uptime})
	}
	for _, svc := range s.Cat.All() {
		got := byService[svc.Name]
		if len(got) == 0 {
			bad = append(bad, svc.Name+" (missing)")
			row(svc.Name, engine.Container{}, "")
			continue
		}
		for _, c := range got {
			if v := s.judge(c); !v.Healthy {
				bad = append(bad, svc.Name+" ("+v.State+")")
			}
			row(svc.Name, c, "")
		}
		delete(byService, svc.Name)
	}
	var extra []string
	for name := range byService {
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		for _, c := range byService[name] {
			row(name, c, "not in the catalog")
		}
	}
	s.Out.Table([]string{"SERVICE", "STATE", "HEALTH", "PORTS", "IMAGE", "UPTIME"}, rows)
	if len(bad) > 0 {
		return fmt.Errorf("not running and healthy in project %s: %s (`mage up` starts and heals them; `mage logs NAME` shows why one stopped)",
			s.Project(), strings.Join(bad, ", "))
	}
	s.Out.Line(ui.OK, "status", "%d services running and healthy", len(s.Cat.All()))
	return nil
}

// Logs prints what the services' containers printed, as o says, the
// services side by side (runtime.Logs): cleaned of terminal escapes and
// with the catalog's secrets hidden, line by line.
func (s *Stack) Logs(ctx context.Context, services []string, o engine.LogOptions) error {
	names, err := LogServices(s.Cat, services)
	if err != nil {
		return err
	}
	// The environment's values, where they can be found, are hidden too;
	// one found nowhere only goes unhidden (the catalog's defaults are).
	_ = s.Secrets(ctx)
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := runtime.Logs(ctx, s.runtime(eng, nil), s.Project(), names, o, check.Redactor(s.Cat), s.Out.Writer()); err != nil {
		return fmt.Errorf("%w: is the stack up? (`mage status`)", err)
	}
	return nil
}

// AllServices is the logs argument that stands for every service of the
// catalog.
const AllServices = "all"

// LogServices checks the services named for logs against the catalog;
// AllServices names every one.
func LogServices(cat *catalog.Catalog, names []string) ([]string, error) {
	if len(names) == 1 && names[0] == AllServices {
		if _, ok := cat.Service(AllServices); !ok {
			names = nil
			for _, svc := range cat.All() {
				names = append(names, svc.Name)
			}
			return names, nil
		}
	}
	if len(names) == 0 {
		return nil, &UsageError{Msg: fmt.Sprintf("name a service of %s, several separated by commas, or %s", cat.File, AllServices)}
	}
	for _, n := range names {
		if _, ok := cat.Service(n); !ok {
			return nil, &UsageError{Msg: fmt.Sprintf("no service %q in %s", n, cat.File)}
		}
	}
	return names, nil
}
