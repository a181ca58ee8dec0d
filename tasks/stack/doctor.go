package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/secrets"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Doctor checks everything deployAll needs and prints one line per check.
// It returns an error naming every failed check.
func (s *Stack) Doctor(ctx context.Context) error {
	var failed []string
	fail := func(subject, format string, args ...any) {
		s.Out.Line(ui.Fail, subject, format, args...)
		failed = append(failed, subject)
	}
	s.Out.Line(ui.OK, "catalog", "%s: %d services, %d infrastructure, environment %s", s.Cat.File, len(s.Cat.Services), len(s.Cat.Infrastructure), s.Env.Name)

	where := os.Getenv("DOCKER_HOST")
	if where == "" {
		where = "unix:///var/run/docker.sock (default; set DOCKER_HOST to change)"
	}
	eng, err := s.engine(ctx)
	var ours map[int]string
	if err != nil {
		fail("engine", "%v", err)
	} else {
		defer eng.Close()
		server, api, err := eng.Version(ctx)
		if err != nil {
			fail("engine", "%s: %v", where, err)
		} else {
			s.Out.Line(ui.OK, "engine", "Docker %s (API %s) at %s", server, api, where)
		}
		ours = s.publishedBy(ctx, eng)
	}

	if cli, err := compose.Detect(ctx); err != nil {
		fail("compose", "%v", err)
	} else {
		s.Out.Line(ui.OK, "compose", "%s %s", strings.Join(cli.Argv, " "), cli.Version)
	}

	conflicts := map[int]*PortConflict{}
	for _, c := range s.portConflicts(ours) {
		conflicts[c.Port] = c
	}
	for _, svc := range s.Cat.All() {
		port, ok := svc.HostPort(s.Env.Ports)
		if !ok {
			continue
		}
		subject := fmt.Sprintf("port %d", port)
		if c := conflicts[port]; c != nil {
			fail(subject, "%s", c.advice(s))
		} else if who := ours[port]; who != "" {
			s.Out.Line(ui.OK, subject, "held by this stack's %s", strings.TrimPrefix(who, s.Project()+"/"))
		} else {
			s.Out.Line(ui.OK, subject, "free for %s", svc.Name)
		}
	}

	for _, svc := range s.Cat.All() {
		if svc.Source == "" {
			s.Out.Line(ui.OK, svc.Name, "runs image %s", svc.Image)
			continue
		}
		s.Out.Line(ui.OK, svc.Name, "source %s with %s", svc.Source, svc.Dockerfile)
		if len(svc.Prebuild) > 0 {
			if p, err := exec.LookPath(svc.Prebuild[0]); err != nil {
				fail(svc.Name+" prebuild", "%q not found on PATH: install it, it builds %s", svc.Prebuild[0], svc.Name)
			} else {
				s.Out.Line(ui.OK, svc.Name+" prebuild", "%s", p)
			}
		}
	}
	for _, c := range secrets.Doctor(s.Cat, s.Env) {
		switch {
		case c.Problem:
			fail(c.Subject, "%s", c.Text)
		case c.DevDefault:
			s.Out.Line(ui.Warn, c.Subject, "%s", c.Text)
		default:
			s.Out.Line(ui.OK, c.Subject, "%s", c.Text)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("doctor: %d checks failed: %s", len(failed), strings.Join(failed, ", "))
	}
	s.Out.Line(ui.OK, "doctor", "ready for `mage deployAll`")
	return nil
}

// PortConflict is a host port the stack needs that something else holds.
type PortConflict struct {
	Port    int
	Service string
	// Holder is "container <name>", "process <comm> (pid N)" or "another process".
	Holder string
	// Own is set when the holder is a container of this very stack (of
	// another service: ports moved between services in the catalog).
	Own string
}

func (c *PortConflict) advice(s *Stack) string {
	switch {
	case c.Own != "":
		return fmt.Sprintf("port %d needed by %s is held by this stack's own container of %s (its port before the catalog moved it): "+
			"`mage down` then `mage up` re-creates the stack with the new ports", c.Port, c.Service, c.Own)
	case strings.Contains(c.Holder, "docker-proxy"):
		return fmt.Sprintf("port %d needed by %s is held by %s, Docker's port proxy of some container: "+
			"`docker ps -a --filter publish=%d` names it; stop that container, or change %s's %s port in %s",
			c.Port, c.Service, c.Holder, c.Port, c.Service, s.Env.Ports, s.Cat.File)
	}
	return fmt.Sprintf("port %d needed by %s is held by %s: stop it, or change %s's %s port in %s",
		c.Port, c.Service, c.Holder, c.Service, s.Env.Ports, s.Cat.File)
}

// portConflicts lists the published ports held by anything but this
// stack's own container of the same service, whatever that container's
// state or name (an interrupted compose leaves containers renamed,
// created or stopped; compose re-creates them). ours maps ports to the
// "project/service" publishing them (publishedBy).
func (s *Stack) portConflicts(ours map[int]string) []*PortConflict {
	var out []*PortConflict
	for _, svc := range s.Cat.All() {
		port, ok := svc.HostPort(s.Env.Ports)
		if !ok {
			continue
		}
		who := ours[port]
		if who == s.Project()+"/"+svc.Name {
			continue
		}
		holder, free := s.portFree(port)
		if free {
			continue
		}
		c := &PortConflict{Port: port, Service: svc.Name, Holder: holder}
		if other, ok := strings.CutPrefix(who, s.Project()+"/"); ok {
			c.Own = other
		} else if who != "" {
			c.Holder = "container " + who
		}
		out = append(out, c)
	}
	return out
}

// checkPorts fails with every port conflict, before compose would fail
// with a less helpful message.
func (s *Stack) checkPorts(ctx context.Context, eng *engine.Engine) error {
	cs := s.portConflicts(s.publishedBy(ctx, eng))
	if len(cs) == 0 {
		return nil
	}
	msgs := make([]string, len(cs))
	own := true
	for i, c := range cs {
		msgs[i] = c.advice(s)
		own = own && c.Own != ""
	}
	if own {
		// Nothing the catalog or the user did wrong: not a usage error.
		return errors.New(strings.Join(msgs, "\n"))
	}
	return &UsageError{Msg: strings.Join(msgs, "\n")}
}

// portFree tries to listen where the stack will publish port. When it
// cannot, it says who holds it, when that can be known.
func (s *Stack) portFree(port int) (string, bool) {
	l, err := net.Listen("tcp", net.JoinHostPort(s.Env.Bind, strconv.Itoa(port)))
	if err == nil {
		l.Close()
		return "", true
	}
	if p := listenerProcess(port); p != "" {
		return p, false
	}
	return "another process", false
}

// publishedBy maps host ports to "project/service" (or a container name) of
// the containers that publish them, or would once started: a container of
// the stack that an interrupted compose left created or stopped counts by
// its configured ports.
func (s *Stack) publishedBy(ctx context.Context, eng *engine.Engine) map[int]string {
	out := map[int]string{}
	list, err := eng.API.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return out
	}
	for _, c := range list.Items {
		who := strings.TrimPrefix(strings.Join(c.Names, ","), "/")
		if p := c.Labels[labels.ComposeProject]; p != "" {
			who = p + "/" + c.Labels[labels.ComposeService]
		}
		for _, p := range c.Ports {
			if p.PublicPort != 0 {
				out[int(p.PublicPort)] = who
			}
		}
		if c.State == "running" || c.Labels[labels.ComposeProject] != s.Project() {
			continue
		}
		in, err := eng.API.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil || in.Container.HostConfig == nil {
			continue
		}
		for _, bs := range in.Container.HostConfig.PortBindings {
			for _, b := range bs {
				if n, err := strconv.Atoi(b.HostPort); err == nil && n != 0 {
					if _, taken := out[n]; !taken {
						out[n] = who
					}
				}
			}
		}
	}
	return out
}

// listenerProcess finds the process listening on a TCP port through /proc
// (Linux; needs the right to read other processes' fds, e.g. root).
func listenerProcess(port int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			pid := strings.Split(fd, "/")[2]
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			return fmt.Sprintf("process %s (pid %s)", strings.TrimSpace(string(comm)), pid)
		}
	}
	return ""
}
