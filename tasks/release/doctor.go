package release

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Doctor thresholds: below minFree under the environment's folder or the
// engine's data root, or a clock further than maxSkew from this machine's,
// is a failure.
const (
	minFree = 1 << 30
	maxSkew = 30 * time.Second
)

// Doctor checks what the host of opts.Env needs for a promote, one line
// each: ssh and the engine (its version, reached as the environment's
// user), the runtime (the compose CLI here, or the swarm's nodes), free
// space under the environment's folder and the engine's data root, the
// host's clock, and each published port: free, or held by this project's
// proxy. It changes nothing but a throwaway container that reads the data
// root's free space, and takes no lock. The error names every check that
// failed.
func Doctor(ctx context.Context, cat *catalog.Catalog, opts Options) error {
	t, _, err := openHost(ctx, cat, &opts, "doctor", false)
	if err != nil {
		return err
	}
	defer t.Close()
	env, p := t.env, opts.Printer
	var failed []string
	check := func(name string, detail string, err error) {
		if err != nil {
			p.Line(ui.Fail, name, "%v", err)
			failed = append(failed, name)
			return
		}
		p.Line(ui.OK, name, "%s", detail)
	}

	ver, err := t.eng.API.ServerVersion(ctx, client.ServerVersionOptions{})
	as := ""
	if u, perr := url.Parse(env.Host); perr == nil && u.User != nil {
		// Answering at all is the proof: the engine's socket admits that
		// user (root, or a member of the docker group).
		as = ", used as " + u.User.Username()
	}
	check("engine", fmt.Sprintf("Docker Engine %s, API %s (%s/%s) at %s%s", ui.Clean(ver.Version), ui.Clean(ver.APIVersion),
		ui.Clean(ver.Os), ui.Clean(ver.Arch), t.eng.Host, as), err)
	desc, err := t.rt.Describe(ctx)
	check(t.rt.Name(), desc, err)

	info, ierr := t.eng.API.Info(ctx, client.InfoOptions{})
	disk := func(what string, d *hostfs.Disk, err error) {
		switch {
		case err != nil:
			check("disk", "", err)
		case d.Free < minFree:
			check("disk", "", fmt.Errorf("%s free of %s under %s: less than %s; `mage prune -env=%s` removes images no release uses",
				ui.Bytes(int64(d.Free)), ui.Bytes(int64(d.Total)), what, ui.Bytes(minFree), env.Name))
		default:
			check("disk", fmt.Sprintf("%s free of %s under %s", ui.Bytes(int64(d.Free)), ui.Bytes(int64(d.Total)), what), nil)
		}
	}
	d, err := t.fs.Disk(ctx)
	disk(env.Dir, d, err)
	if ierr != nil {
		check("disk", "", ierr)
	} else {
		root := ui.Clean(info.Info.DockerRootDir)
		d, err := t.fs.DiskAt(ctx, info.Info.DockerRootDir)
		disk(root+" (the engine's data root)", d, err)
	}

	if ierr != nil {
		check("clock", "", ierr)
	} else if at, err := time.Parse(time.RFC3339Nano, info.Info.SystemTime); err != nil {
		check("clock", "", fmt.Errorf("the engine's time %q: %w", ui.Clean(info.Info.SystemTime), err))
	} else if skew := time.Since(at); skew > maxSkew || skew < -maxSkew {
		check("clock", "", fmt.Errorf("the host's clock is %s off this machine's (more than %s): release ids and the audit log's times would disagree; sync it (NTP)",
			skew.Round(time.Second), maxSkew))
	} else {
		check("clock", fmt.Sprintf("within %s of this machine's", maxSkew), nil)
	}

	for _, s := range services(cat, env) {
		if s.HostPort == 0 {
			continue
		}
		detail, err := t.port(ctx, s.HostPort)
		check("port "+strconv.Itoa(s.HostPort), s.Name+": "+detail, err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("doctor %s: %s failed", env.Name, strings.Join(failed, ", "))
	}
	p.Line(ui.OK, "doctor", "%s is ready for `mage promote -env=%s`", displayHost(env), env.Name)
	return nil
}

// port says who holds a published port on the host: this project's proxy,
// another container (an error), nothing, or a process outside the engine
// (an error: the proxy could not publish it).
func (t *target) port(ctx context.Context, port int) (string, error) {
	cs, err := t.eng.API.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return "", fmt.Errorf("containers on %s: %w", t.eng.Host, err)
	}
	for _, c := range cs.Items {
		for _, p := range c.Ports {
			if int(p.PublicPort) != port {
				continue
			}
			name := strings.TrimPrefix(strings.Join(c.Names, ","), "/")
			if c.Labels[labels.Proxy] == t.cat.Project.Name {
				return "held by this project's proxy", nil
			}
			return "", fmt.Errorf("held by container %s (%s): the proxy could not publish it; stop that container or change the port",
				ui.Clean(name), ui.Clean(c.Image))
		}
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(hostAddr(t.env), strconv.Itoa(port)))
	if err == nil {
		conn.Close()
		return "", fmt.Errorf("something outside the engine answers on %s:%d: the proxy could not publish it", hostAddr(t.env), port)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && strings.Contains(err.Error(), "refused") {
		return "free", nil
	}
	return fmt.Sprintf("free (nothing answers: %s)", ui.Clean(firstLine(err))), nil
}
