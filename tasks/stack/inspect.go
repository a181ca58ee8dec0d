package stack

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/ui"
)

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
	images, err := s.wantImages(ctx, eng)
	if err != nil {
		return err
	}
	rep, runErr := check.Run(ctx, s.Cat, check.Target{Env: s.Env, Project: s.Project(),
		HostAddr: s.HTTPHost(), API: eng.API, ReuseProbe: true},
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
	key, err := record.Key(s.Dir)
	if err != nil {
		return err
	}
	rec := record.Test{Env: s.Env.Name, Project: s.Project(), Images: images,
		Config: record.Views(s.Cat, key), Passed: runErr == nil, At: time.Now().UTC()}
	if err := record.WriteTest(s.Dir, rec); err != nil {
		return err
	}
	return runErr
}

// containers connects to the engine and lists the stack's service
// containers (testAll's probe left out). The caller closes the engine.
func (s *Stack) containers(ctx context.Context) (*engine.Engine, []engine.Container, error) {
	eng, err := s.engine(ctx)
	if err != nil {
		return nil, nil, err
	}
	all, err := eng.Containers(ctx, s.Project())
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
		build, healthy, cached, _ := session.times(svc.Name)
		timing := "-"
		switch {
		case session.noop:
			timing = "unchanged"
		case cached:
			timing = "cached, healthy after " + ui.Seconds(healthy)
		case build > 0 || healthy > 0:
			timing = "built " + ui.Seconds(build) + ", healthy after " + ui.Seconds(healthy)
		}
		rows = append(rows, []string{svc.Name, s.Cat.ImageRef(svc), port, s.state(c), timing})
	}
	s.Out.Header("deployAll %s: %s", s.Env.Name, s.Dir)
	s.Out.Table([]string{"SERVICE", "IMAGE", "PORT", "STATE", "TIME"}, rows)
	return nil
}

func (s *Stack) state(c engine.Container) string {
	switch {
	case c.ID == "":
		return s.Out.Colorize(ui.Fail, "missing")
	case c.State == "running" && (c.Health == "healthy" || c.Health == ""):
		st := "running"
		if c.Health != "" {
			st += " (healthy)"
		}
		return s.Out.Colorize(ui.OK, st)
	case c.State == "running":
		return s.Out.Colorize(ui.Warn, "running ("+c.Health+")")
	}
	return s.Out.Colorize(ui.Fail, c.State)
}

// Status prints every container of the stack.
func (s *Stack) Status(ctx context.Context) error {
	eng, cs, err := s.containers(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	if len(cs) == 0 {
		s.Out.Line(ui.Info, s.Project(), "no containers: the stack is not running (`mage up`)")
		return nil
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Service < cs[j].Service })
	var rows [][]string
	for _, c := range cs {
		health := c.Health
		if health == "" {
			health = "-"
		}
		var ports []string
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				ports = append(ports, fmt.Sprintf("%s:%d->%d", p.HostIP, p.HostPort, p.ContainerPort))
			}
		}
		uptime := "-"
		if c.State == "running" && !c.StartedAt.IsZero() {
			uptime = time.Since(c.StartedAt).Round(time.Second).String()
		}
		rows = append(rows, []string{c.Service, s.state(c), health, strings.Join(ports, ","), c.Image, uptime})
	}
	s.Out.Table([]string{"SERVICE", "STATE", "HEALTH", "PORTS", "IMAGE", "UPTIME"}, rows)
	return nil
}

// Logs prints the last lines of one service's container.
func (s *Stack) Logs(ctx context.Context, service string, tail int) error {
	if _, ok := s.Cat.Service(service); !ok {
		return &UsageError{Msg: fmt.Sprintf("no service %q in %s", service, s.Cat.File)}
	}
	eng, cs, err := s.containers(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	for _, c := range cs {
		if c.Service == service {
			return eng.Logs(ctx, c.ID, tail, false, s.Out.Writer())
		}
	}
	return fmt.Errorf("%s has no container in project %s: is the stack up? (`mage status`)", service, s.Project())
}
