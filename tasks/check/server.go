package check

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ProbeIdle is how long a probe server waits for a request before it exits
// by itself. An exited probe no longer holds the stack's network, so even
// a plain `compose down` (without --remove-orphans) succeeds after it.
const ProbeIdle = 30 * time.Minute

// probeServePort is the port the server listens on inside its container.
const probeServePort = 8099

// serverCmd is the probe server's command line; tests swap it for one
// that fails.
var serverCmd = func() []string {
	return []string{"-serve", ":" + strconv.Itoa(probeServePort), "-idle", ProbeIdle.String()}
}

// probeServerName names a project's probe server container. One fixed name
// per project makes the engine settle a race between two runs that both
// found no server: the second create fails with a conflict.
func probeServerName(project string) string { return project + "-testall-probe" }

// LocalEngine reports whether api talks to an engine on this machine (a
// unix socket or named pipe, or tcp to a loopback address): only there is
// a port the engine publishes on 127.0.0.1 reachable from here. An engine
// reached over ssh is never local.
func LocalEngine(api *client.Client) bool {
	if api == nil {
		return false
	}
	u, err := url.Parse(api.DaemonHost())
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix", "npipe":
		return true
	case "tcp", "http", "https":
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.IsLoopback()
	}
	return false
}

// RemoveProbe removes every probe container of project (servers and any
// one-shot probe left by a crash), running or not. compose down leaves
// the local probe server (it carries no compose label) and fails while
// it holds the network, so call this before it.
func RemoveProbe(ctx context.Context, api *client.Client, project string) error {
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", labels.Probe+"="+project)})
	if err != nil {
		return fmt.Errorf("remove probe of %s: list: %w", project, err)
	}
	var errs []error
	for _, c := range res.Items {
		if err := removeContainer(ctx, api, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove probe %s of %s: %w", engine.ShortID(c.ID), project, err))
		}
	}
	return errors.Join(errs...)
}

// removeContainer force-removes id; one that is gone already, or being
// removed by someone else, is not an error.
func removeContainer(ctx context.Context, api *client.Client, id string) error {
	_, err := api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	if err == nil || cerrdefs.IsNotFound(err) || (cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")) {
		return nil
	}
	return err
}

// probeServer is a running probe server and how to reach it.
type probeServer struct {
	id, base, token string
}

// runServed performs specs through the project's probe server, starting
// one when there is none fit for use. A reused server that does not answer
// (it died, or exited idle, since it was listed) is replaced once.
func runServed(ctx context.Context, api *client.Client, ref, netName, project string, specs []probe.Spec) ([]probe.Outcome, error) {
	srv, reused, err := ensureServer(ctx, api, ref, netName, project, "")
	if err != nil {
		return nil, err
	}
	out, err := postSpecs(ctx, srv, specs)
	var te *transportError
	if err != nil && reused && errors.As(err, &te) && ctx.Err() == nil {
		if srv, _, err = ensureServer(ctx, api, ref, netName, project, srv.id); err != nil {
			return nil, err
		}
		out, err = postSpecs(ctx, srv, specs)
	}
	if err != nil {
		return nil, fmt.Errorf("probe server %s on network %s: %w", engine.ShortID(srv.id), netName, err)
	}
	return out, nil
}

// ensureServer returns the project's probe server on netName running ref,
// reused when there is one (unless it is drop), else started afresh; any
// other probe server of the project (old image, other network, stopped)
// is removed.
func ensureServer(ctx context.Context, api *client.Client, ref, netName, project, drop string) (probeServer, bool, error) {
	for attempt := 0; ; attempt++ {
		res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", labels.Probe+"="+project, labels.ProbeMode+"=serve")})
		if err != nil {
			return probeServer{}, false, fmt.Errorf("probe server of %s: list: %w", project, err)
		}
		var stale []string
		busy := false
		for _, c := range res.Items {
			if c.ID != drop {
				if srv, ok := usableServer(c, ref, netName); ok {
					return srv, true, nil
				}
				// Another run has just created it and is about to start it.
				if c.State == container.StateCreated && time.Since(time.Unix(c.Created, 0)) < 30*time.Second {
					busy = true
					continue
				}
			}
			stale = append(stale, c.ID)
		}
		for _, id := range stale {
			if err := removeContainer(ctx, api, id); err != nil {
				return probeServer{}, false, fmt.Errorf("probe server of %s: remove old %s: %w", project, engine.ShortID(id), err)
			}
		}
		if !busy {
			srv, err := startServer(ctx, api, ref, netName, project)
			if err == nil {
				return srv, false, nil
			}
			if !cerrdefs.IsConflict(err) {
				return probeServer{}, false, err
			}
		}
		// Another run holds the name: use its server once it is up.
		if attempt == 50 {
			return probeServer{}, false, fmt.Errorf("probe server of %s: another run is starting one and it did not come up", project)
		}
		select {
		case <-ctx.Done():
			return probeServer{}, false, fmt.Errorf("probe server of %s: %w", project, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// usableServer says whether a listed probe server runs ref, on netName,
// published on loopback, and how to reach it. Everything it needs is in
// the list entry: reuse costs one API call.
func usableServer(c container.Summary, ref, netName string) (probeServer, bool) {
	if c.State != container.StateRunning || c.Labels[labels.ProbeImage] != ref || c.Labels[labels.ProbeToken] == "" {
		return probeServer{}, false
	}
	if c.NetworkSettings == nil || c.NetworkSettings.Networks[netName] == nil {
		return probeServer{}, false
	}
	for _, p := range c.Ports {
		if p.PrivatePort == probeServePort && p.PublicPort != 0 && p.IP.IsLoopback() {
			return probeServer{id: c.ID, token: c.Labels[labels.ProbeToken],
				base: "http://" + net.JoinHostPort(p.IP.String(), strconv.Itoa(int(p.PublicPort)))}, true
		}
	}
	return probeServer{}, false
}

// startServer creates and starts a probe server and waits until it
// answers.
func startServer(ctx context.Context, api *client.Client, ref, netName, project string) (probeServer, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return probeServer{}, err
	}
	token := hex.EncodeToString(tok)
	cport := network.MustParsePort(strconv.Itoa(probeServePort) + "/tcp")
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: probeServerName(project),
		Config: &container.Config{Image: ref,
			Cmd:          serverCmd(),
			Env:          []string{"PROBE_TOKEN=" + token},
			ExposedPorts: network.PortSet{cport: {}},
			Labels: map[string]string{
				// No compose project label: compose would take the server
				// for an orphan of the project, and every `up
				// --remove-orphans` (mage's, deploy-all.sh's) would remove
				// it. down removes it first (RemoveProbe).
				labels.Probe: project, labels.ProbeMode: "serve", labels.ProbeImage: ref, labels.ProbeToken: token}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(netName),
			// Loopback only, on a port the engine picks: nothing outside
			// this machine reaches into the stack's network through it.
			PortBindings: network.PortMap{cport: {{HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), HostPort: ""}}}},
		NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}},
	})
	if err != nil {
		return probeServer{}, fmt.Errorf("probe server on network %s: create: %w", netName, err)
	}
	srv := probeServer{id: created.ID, token: token}
	fail := func(err error) (probeServer, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = removeContainer(rctx, api, created.ID)
		return probeServer{}, fmt.Errorf("probe server on network %s: %w", netName, err)
	}
	if _, err := api.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	in, err := api.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fail(fmt.Errorf("inspect: %w", err))
	}
	if in.Container.NetworkSettings != nil {
		for _, b := range in.Container.NetworkSettings.Ports[cport] {
			if b.HostPort != "" {
				srv.base = "http://" + net.JoinHostPort("127.0.0.1", b.HostPort)
				break
			}
		}
	}
	if srv.base == "" {
		// A server that exited at once has no port by the time of the
		// inspect: say why it exited rather than that no port exists.
		if st := in.Container.State; st != nil && !st.Running {
			return fail(fmt.Errorf("exited %d: %s", st.ExitCode, lastLogLine(ctx, api, created.ID)))
		}
		return fail(errors.New("the engine published no port for it"))
	}
	if err := waitServer(ctx, api, srv); err != nil {
		return fail(err)
	}
	return srv, nil
}

// serverAnswerTimeout bounds how long a started probe server may take to
// answer its ping before the one-shot probe is used instead.
const serverAnswerTimeout = 5 * time.Second

// errServerExited is why waitServer gave up on a server that exited.
var errServerExited = errors.New("exited")

// testHookServerWait, when set, learns how each waitServer ended: nil when
// the server answered, else an error wrapping errServerExited or
// errServerTimeout.
var testHookServerWait func(err error)

// errServerTimeout is why waitServer gave up on a server that still ran
// without answering.
var errServerTimeout = errors.New("not answering")

// waitServer polls the server's ping path until it answers: the published
// port accepts connections (the engine's proxy) before the probe listens.
// The engine tells when the server exits, and waitServer stops waiting at
// that moment, with what the server said.
func waitServer(ctx context.Context, api *client.Client, srv probeServer) (err error) {
	if testHookServerWait != nil {
		defer func() { testHookServerWait(err) }()
	}
	wctx, cancel := context.WithTimeout(ctx, serverAnswerTimeout)
	defer cancel()
	exited := api.ContainerWait(wctx, srv.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last error
	for {
		rctx, rcancel := context.WithTimeout(wctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, srv.base+probe.PathPing, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				rcancel()
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		rcancel()
		last = err
		select {
		case r := <-exited.Result:
			return fmt.Errorf("%w %d: %s", errServerExited, r.StatusCode, lastLogLine(ctx, api, srv.id))
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w on %s after %s: %v", errServerTimeout, srv.base, serverAnswerTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lastLogLine is the last line a container wrote, for an error message.
func lastLogLine(ctx context.Context, api *client.Client, id string) string {
	logs, err := api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer logs.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, io.LimitReader(logs, 64<<10))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return ui.Shorten(lines[len(lines)-1], 200)
}

// transportError is a POST that got no HTTP answer: the server may be gone.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// serverClient talks to probe servers. It ignores proxy settings: the
// server is on loopback.
var serverClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4,
	IdleConnTimeout: 30 * time.Second}}

// postSpecs sends specs to the server and returns its outcomes sorted by
// ID.
func postSpecs(ctx context.Context, srv probeServer, specs []probe.Spec) ([]probe.Outcome, error) {
	body, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.base+probe.PathRun, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+srv.token)
	resp, err := serverClient.Do(req)
	if err != nil {
		return nil, &transportError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &transportError{err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, ui.Shorten(strings.TrimSpace(string(data)), 200))
	}
	var out []probe.Outcome
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return out, nil
}

// runExec performs specs with the probe exec'd inside the project's idle
// probe container on netName: for an engine whose published ports this
// machine cannot reach on loopback (a remote host), it costs an exec
// instead of the create, start and removal of a container per run. A
// reused container that is gone or exited since it was listed is replaced
// once.
func runExec(ctx context.Context, api *client.Client, ref, netName, project string, specs []probe.Spec) ([]probe.Outcome, error) {
	arg, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	drop := ""
	for attempt := 0; ; attempt++ {
		id, reused, err := ensureExecProbe(ctx, api, ref, netName, project, drop)
		if err != nil {
			return nil, err
		}
		out, err := execProbe(ctx, api, id, string(arg))
		if err == nil || !reused || attempt > 0 || ctx.Err() != nil {
			if err != nil {
				return nil, fmt.Errorf("probe %s on network %s: %w", engine.ShortID(id), netName, err)
			}
			return out, nil
		}
		drop = id
	}
}

// execModeLabel is the value of labels.ProbeMode of an idle probe that
// checks are exec'd in.
const execModeLabel = "exec"

// ensureExecProbe returns the project's idle probe container on netName
// running ref (reused unless it is drop), starting one when there is none;
// any other exec probe of the project is removed.
func ensureExecProbe(ctx context.Context, api *client.Client, ref, netName, project, drop string) (string, bool, error) {
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", labels.Probe+"="+project, labels.ProbeMode+"="+execModeLabel)})
	if err != nil {
		return "", false, fmt.Errorf("probe of %s: list: %w", project, err)
	}
	for _, c := range res.Items {
		if c.ID != drop && c.State == container.StateRunning && c.Labels[labels.ProbeImage] == ref &&
			c.NetworkSettings != nil && c.NetworkSettings.Networks[netName] != nil {
			return c.ID, true, nil
		}
		if err := removeContainer(ctx, api, c.ID); err != nil {
			return "", false, fmt.Errorf("probe of %s: remove old %s: %w", project, engine.ShortID(c.ID), err)
		}
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return "", false, err
	}
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: probeServerName(project) + "-exec",
		Config: &container.Config{Image: ref,
			// It only waits, on its own loopback: the checks are exec'd.
			Cmd: []string{"-serve", "127.0.0.1:" + strconv.Itoa(probeServePort), "-idle", ProbeIdle.String()},
			Env: []string{"PROBE_TOKEN=" + hex.EncodeToString(tok)},
			// No compose label, as for the server: compose took it for
			// an orphan of the project and said so at every promote's
			// `compose up`. down -env removes it first (RemoveProbe).
			Labels: map[string]string{labels.Probe: project, labels.ProbeMode: execModeLabel, labels.ProbeImage: ref}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(netName)},
		NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}},
	})
	if err != nil {
		if cerrdefs.IsConflict(err) && drop == "" {
			// Another run made it meanwhile: take that one.
			return ensureExecProbe(ctx, api, ref, netName, project, "-")
		}
		return "", false, fmt.Errorf("probe on network %s: create: %w", netName, err)
	}
	if _, err := api.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		_ = removeContainer(context.WithoutCancel(ctx), api, created.ID)
		return "", false, fmt.Errorf("probe on network %s: start: %w", netName, err)
	}
	return created.ID, false, nil
}

// execProbe runs the one-shot probe with specs (JSON) in container id and
// decodes what it prints.
func execProbe(ctx context.Context, api *client.Client, id, specs string) ([]probe.Outcome, error) {
	var stdout, stderr bytes.Buffer
	code, err := engine.ExecTo(ctx, api, id, []string{"/probe", specs}, 8<<20, &stdout, &stderr)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("exited %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	var out []probe.Outcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("bad output: %w", err)
	}
	return out, nil
}
