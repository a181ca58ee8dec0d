// Package proxy runs the reverse proxy in front of a remote environment's
// published ports, so that a service's container can be replaced without
// dropping a request.
//
// Each project gets, on its engine, an edge network "<project>-maestro-edge"
// and a proxy container "<project>-maestro-proxy" (a minimal Caddy) that
// publishes the environment's ports. For each published port the proxy
// resolves the service's DNS alias on the edge network and sends requests
// to whatever containers answer to it. The proxy's configuration is loaded
// once and never changed (see Config): a service is swapped by attaching
// its new, healthy container to the edge network under the service's alias
// (Attach), waiting until the proxy sends it requests, draining the old
// container (Drain: out of rotation, its requests in flight finish), then
// stopping it gracefully (SIGTERM) and removing it.
//
// Draining first matters for requests Caddy may not repeat: without it, a
// POST (any method but GET) that reached the old container in the instant
// it closed its listener was reset by the kernel after the connection was
// made, and Caddy retries such a request only when it is a GET, since the
// upstream may have acted on it (3 failed POSTs in about 65 swaps under
// 100 POST/s). A drained container gets no new request, so none meets its
// closing listener.
package proxy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Spec is the proxy of one project on one engine.
type Spec struct {
	// Project is the compose project the proxy serves: it names the edge
	// network and the proxy container.
	Project string
	// Routes are the published ports, one route each.
	Routes []Route
	// Bind is the host address the ports are published on: "" for every
	// address of the host.
	Bind string
}

// Action says what Ensure did.
type Action string

// Values of Proxy.Action.
const (
	// Kept: a running proxy already matched the spec; it was not touched.
	Kept Action = "kept"
	// Created: there was no proxy.
	Created Action = "created"
	// Replaced: the proxy ran another spec (or was not running) and a new
	// container took its place.
	Replaced Action = "replaced"
)

// Proxy is the proxy container as Ensure left it, running.
type Proxy struct {
	// ID is the container's ID.
	ID string
	// Name is the container's name, ContainerName(project).
	Name string
	// Network is the edge network's name, NetworkName(project), and
	// NetworkID its ID.
	Network, NetworkID string
	// Image is the proxy image's reference.
	Image string
	// Hash is the container's labels.ProxyHash.
	Hash string
	// Action is what Ensure did.
	Action Action
}

// NetworkName is the name of a project's edge network: the network the
// proxy and the services it fronts share.
func NetworkName(project string) string { return project + "-maestro-edge" }

// ContainerName is the name of a project's proxy container.
func ContainerName(project string) string { return project + "-maestro-proxy" }

// nextName is the name a replacement proxy is created under, until the
// container it replaces is gone.
func nextName(project string) string { return ContainerName(project) + "-next" }

// revision changes when the container's settings below change, so that
// Ensure replaces proxies created with the old ones.
const revision = "2"

// Limits of the proxy container: a Caddy with a few thousand connections
// uses some tens of MB and a few dozen threads.
const (
	memoryLimit = 256 << 20
	pidsLimit   = 256
	tmpfsSize   = "16m"
)

// stopTimeout is how long a stopping proxy gets before SIGKILL: Caddy
// waits up to GracePeriod for requests in flight.
const stopTimeout = GracePeriod + 5*time.Second

// readyTimeout bounds the wait for a started proxy to listen on its ports.
const readyTimeout = 30 * time.Second

// check reports what is wrong with spec before anything is asked of the
// engine.
func (s Spec) check() error {
	if !catalog.ProjectName.MatchString(s.Project) {
		return fmt.Errorf("proxy: project name %q is not a compose project name (a-z, 0-9, -, _)", s.Project)
	}
	if err := checkRoutes(s.Routes); err != nil {
		return fmt.Errorf("proxy of project %s: %w", s.Project, err)
	}
	if s.Bind != "" {
		if _, err := netip.ParseAddr(s.Bind); err != nil {
			return fmt.Errorf("proxy of project %s: bind address %q is not an IP address (\"\" publishes on every address)", s.Project, s.Bind)
		}
	}
	return nil
}

// hash covers everything the proxy container runs with.
func (s Spec) hash(ref string, cfg []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "revision %s\nimage %s\nbind %q\nports %v\n", revision, ref, s.Bind, listenPorts(s.Routes))
	h.Write(cfg)
	return hex.EncodeToString(h.Sum(nil))
}

// locks serialises Ensure and Remove per engine and project within this
// process: two at once would each replace the other's container.
var locks sync.Map // host + "\x00" + project -> *sync.Mutex

func lock(api *client.Client, project string) func() {
	mu, _ := locks.LoadOrStore(api.DaemonHost()+"\x00"+project, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// Ensure makes the proxy of spec.Project run on the engine api talks to,
// as spec describes, and returns it: it builds the proxy image when the
// engine lacks it (see EnsureImage: allow minutes the first time on a
// machine), creates the edge network when missing, and creates the proxy
// container when missing.
//
// A running proxy whose labels.ProxyHash matches the spec (image, Caddy
// configuration, bind address, published ports) is left alone: it is not
// restarted, and no request is disturbed. A proxy with another hash, or
// one not running, is replaced: the new configuration is first validated
// by Caddy in a throwaway container, the new proxy is created, the old one
// is stopped gracefully, the new one is started and waited for until it
// listens on every port, then the old one is removed. When the new one
// does not start (a host port taken, say), the old one is started again
// and the error says so. Replacing a proxy briefly interrupts every
// published port, because Docker cannot change a running container's
// published ports: change the set of routes only with the deployment, and
// swap services with Attach instead.
//
// The container runs with every capability dropped but NET_BIND_SERVICE,
// no-new-privileges, a read-only root filesystem (tmpfs on /data, /config
// and /tmp for what Caddy writes), memory and pids limits, and restart
// policy unless-stopped. Its configuration is copied in before start into
// an anonymous volume that lives and dies with the container (the only
// place of a read-only container the engine lets one copy into, and it
// survives restarts, unlike a tmpfs); nothing of the host is mounted.
func Ensure(ctx context.Context, api *client.Client, spec Spec) (*Proxy, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	defer lock(api, spec.Project)()
	ref, err := EnsureImage(ctx, api)
	if err != nil {
		return nil, fmt.Errorf("proxy of project %s: %w", spec.Project, err)
	}
	cfg, err := Config(spec.Routes)
	if err != nil {
		return nil, fmt.Errorf("proxy of project %s: %w", spec.Project, err)
	}
	p := &Proxy{Name: ContainerName(spec.Project), Network: NetworkName(spec.Project), Image: ref,
		Hash: spec.hash(ref, cfg)}
	if p.NetworkID, err = ensureNetwork(ctx, api, spec.Project); err != nil {
		return nil, err
	}
	old, err := ownContainer(ctx, api, spec.Project, p.Name)
	if err != nil {
		return nil, err
	}
	if old == nil {
		// A replacement whose rename an interrupted Ensure did not reach.
		if next, err := ownContainer(ctx, api, spec.Project, nextName(spec.Project)); err != nil {
			return nil, err
		} else if current(next, p) {
			if _, err := api.ContainerRename(ctx, next.ID, client.ContainerRenameOptions{NewName: p.Name}); err != nil {
				return nil, fmt.Errorf("proxy of project %s: rename %s: %w", spec.Project, nextName(spec.Project), err)
			}
			p.ID, p.Action = next.ID, Kept
			return p, nil
		}
	}
	if current(old, p) {
		p.ID, p.Action = old.ID, Kept
		return p, nil
	}
	if err := validate(ctx, api, spec.Project, ref, cfg); err != nil {
		return nil, err
	}
	if err := removeContainer(ctx, api, spec.Project, nextName(spec.Project)); err != nil {
		return nil, err
	}
	id, err := create(ctx, api, spec, ref, cfg, p.Hash, p.NetworkID)
	if err != nil {
		return nil, err
	}
	oldRunning := old != nil && old.State != nil && old.State.Running
	if oldRunning {
		if err := stop(ctx, api, old.ID); err != nil {
			discard(ctx, api, id)
			return nil, fmt.Errorf("proxy of project %s: stop the proxy being replaced: %w", spec.Project, err)
		}
	}
	if err := startReady(ctx, api, spec, id); err != nil {
		discard(ctx, api, id)
		if oldRunning {
			// Even when ctx has ended: the project's ports are down until
			// the old proxy runs again.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, serr := api.ContainerStart(rctx, old.ID, client.ContainerStartOptions{}); serr != nil {
				return nil, fmt.Errorf("%w; the previous proxy did not start again either (%v): no port of project %s is served", err, serr, spec.Project)
			}
			return nil, fmt.Errorf("%w; the previous proxy was started again", err)
		}
		return nil, err
	}
	p.Action = Created
	if old != nil {
		p.Action = Replaced
		if err := removeContainer(ctx, api, spec.Project, p.Name); err != nil {
			return nil, err
		}
	}
	if _, err := api.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: p.Name}); err != nil {
		return nil, fmt.Errorf("proxy of project %s: rename %s to %s: %w", spec.Project, nextName(spec.Project), p.Name, err)
	}
	p.ID = id
	return p, nil
}

// current reports whether c is a running proxy of p's hash on p's edge
// network.
func current(c *container.InspectResponse, p *Proxy) bool {
	if c == nil || c.State == nil || !c.State.Running || c.State.Restarting || c.Config == nil ||
		c.Config.Labels[labels.ProxyHash] != p.Hash || c.NetworkSettings == nil {
		return false
	}
	ep := c.NetworkSettings.Networks[p.Network]
	return ep != nil && ep.NetworkID == p.NetworkID
}

// ownContainer inspects the container called name: nil when there is
// none, an error when it is not the proxy of project (Ensure must not
// replace what it did not create).
func ownContainer(ctx context.Context, api *client.Client, project, name string) (*container.InspectResponse, error) {
	res, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if engine.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("proxy of project %s: inspect %s: %w", project, name, err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labels.Proxy] != project {
		return nil, fmt.Errorf("proxy of project %s: a container named %s exists and is not this project's proxy (no label %s=%s): remove or rename it",
			project, name, labels.Proxy, project)
	}
	return &c, nil
}

// ensureNetwork returns the ID of the project's edge network, creating it
// when missing.
func ensureNetwork(ctx context.Context, api *client.Client, project string) (string, error) {
	id, err := findNetwork(ctx, api, project)
	if err != nil || id != "" {
		return id, err
	}
	name := NetworkName(project)
	created, err := api.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge",
		Labels: map[string]string{labels.Project: project, labels.Proxy: project}})
	if err != nil && !isConflict(err) {
		return "", fmt.Errorf("proxy of project %s: create network %s: %w", project, name, err)
	}
	// Engines before API 1.44 accept a second network of the same name
	// when two processes create it at once: every caller settles on the
	// same one (findNetwork's choice) and a duplicate made here goes.
	id, err = findNetwork(ctx, api, project)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("proxy of project %s: network %s was created and is gone", project, name)
	}
	if created.ID != "" && created.ID != id {
		_, _ = api.NetworkRemove(ctx, created.ID, client.NetworkRemoveOptions{})
	}
	return id, nil
}

// findNetwork returns the ID of the project's edge network, "" when there
// is none. A network of that name that is not the project's is an error:
// the proxy must not publish a foreign network's containers.
func findNetwork(ctx context.Context, api *client.Client, project string) (string, error) {
	ids, err := edgeNetworks(ctx, api, project)
	if err != nil || len(ids) == 0 {
		return "", err
	}
	return ids[0], nil
}

// edgeNetworks lists the IDs of the networks named NetworkName(project),
// sorted (more than one only after a creation race on an old engine).
func edgeNetworks(ctx context.Context, api *client.Client, project string) ([]string, error) {
	name := NetworkName(project)
	// The name filter matches substrings: compare exactly.
	res, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return nil, fmt.Errorf("proxy of project %s: list networks: %w", project, err)
	}
	var ids []string
	for _, n := range res.Items {
		if n.Name != name {
			continue
		}
		if n.Labels[labels.Proxy] != project {
			return nil, fmt.Errorf("proxy of project %s: a network named %s exists and is not this project's edge network (no label %s=%s): remove or rename it",
				project, name, labels.Proxy, project)
		}
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

func isConflict(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "already exists") || strings.Contains(strings.ToLower(err.Error()), "conflict"))
}

// hardened is the host configuration every proxy container runs with.
func hardened(project string) *container.HostConfig {
	pids := int64(pidsLimit)
	tmpfs := "rw,noexec,nosuid,nodev,size=" + tmpfsSize
	return &container.HostConfig{
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_BIND_SERVICE"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/data": tmpfs, "/config": tmpfs, "/tmp": tmpfs},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: configDir,
			VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{labels.Proxy: project, labels.Project: project}}}},
		Resources: container.Resources{Memory: memoryLimit, MemorySwap: memoryLimit, PidsLimit: &pids},
		// Docker's DNS answers the edge network's aliases itself and
		// forwards any other name to the container's resolvers, with its
		// search domains: a service alias with no container (a stop-first
		// swap) could then get an answer from outside and production
		// traffic with it. The proxy needs no other name: its resolvers
		// are one that never answers, and there is no search domain.
		DNS:       []netip.Addr{pinnedDNS},
		DNSSearch: []string{"."},
	}
}

// pinnedDNS is the proxy's only name server behind Docker's own: loopback
// inside the proxy's network namespace, where nothing listens on port 53,
// so that a name Docker does not know fails at once.
var pinnedDNS = netip.MustParseAddr("127.0.0.1")

// env points Caddy's data and configuration folders at the tmpfs mounts.
var env = []string{"HOME=/tmp", "XDG_DATA_HOME=/data", "XDG_CONFIG_HOME=/config"}

// create creates the proxy container under nextName with its
// configuration copied in, and returns its ID.
func create(ctx context.Context, api *client.Client, spec Spec, ref string, cfg []byte, hash, netID string) (string, error) {
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	var bind netip.Addr
	if spec.Bind != "" {
		bind = netip.MustParseAddr(spec.Bind) // checked by Spec.check
	}
	health := []string{"CMD", "/" + binary, "listening"}
	for _, port := range listenPorts(spec.Routes) {
		p := network.MustParsePort(strconv.Itoa(port) + "/tcp")
		exposed[p] = struct{}{}
		bindings[p] = []network.PortBinding{{HostIP: bind, HostPort: strconv.Itoa(port)}}
		health = append(health, strconv.Itoa(port))
	}
	host := hardened(spec.Project)
	host.NetworkMode = container.NetworkMode(netID)
	host.PortBindings = bindings
	host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	stopSecs := int(stopTimeout / time.Second)
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: nextName(spec.Project),
		Config: &container.Config{
			Image:        ref,
			Cmd:          []string{"run", "--config", configFile},
			Env:          env,
			ExposedPorts: exposed,
			Labels:       map[string]string{labels.Proxy: spec.Project, labels.Project: spec.Project, labels.ProxyHash: hash},
			StopTimeout:  &stopSecs,
			// For `docker ps` and monitoring; Ensure does not wait for it
			// (the first check runs only after Interval).
			Healthcheck: &container.HealthConfig{Test: health, Interval: 10 * time.Second,
				Timeout: 3 * time.Second, Retries: 3},
		},
		HostConfig:       host,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netID: {}}},
	})
	if err != nil {
		return "", fmt.Errorf("proxy of project %s: create container: %w", spec.Project, err)
	}
	if err := copyConfig(ctx, api, created.ID, cfg); err != nil {
		discard(ctx, api, created.ID)
		return "", fmt.Errorf("proxy of project %s: %w", spec.Project, err)
	}
	return created.ID, nil
}

// copyConfig copies cfg into the container's configuration volume.
func copyConfig(ctx context.Context, api *client.Client, id string, cfg []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "caddy.json", Mode: 0o444, Size: int64(len(cfg)),
		ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(cfg); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: configDir, Content: &buf}); err != nil {
		return fmt.Errorf("copy the configuration into the container: %w", err)
	}
	return nil
}

// takenPort finds the host port in the engine's error for a port that is
// in use: "Bind for 127.0.0.1:8000 failed: port is already allocated"
// (another container) or "listen tcp4 0.0.0.0:8000: bind: address already
// in use" (another program).
var takenPort = regexp.MustCompile(`(?:Bind for |listen tcp[46]? )(\S*):(\d+)`)

// startReady starts the container and waits until Caddy listens on every
// port.
func startReady(ctx context.Context, api *client.Client, spec Spec, id string) error {
	if _, err := api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		if m := takenPort.FindStringSubmatch(err.Error()); m != nil && strings.Contains(err.Error(), "already") {
			where := "on every address"
			if spec.Bind != "" {
				where = "on " + spec.Bind
			}
			return fmt.Errorf("proxy of project %s: host port %s %s is already taken: stop what holds it "+
				"(on the host: `ss -ltnp 'sport = :%s'`, `docker ps --filter publish=%s`) or publish the route on another port: %w",
				spec.Project, m[2], where, m[2], m[2], err)
		}
		return fmt.Errorf("proxy of project %s: start: %w", spec.Project, err)
	}
	ports := listenPorts(spec.Routes)
	if err := waitListening(ctx, api, id, ports); err != nil {
		return fmt.Errorf("proxy of project %s: %w", spec.Project, err)
	}
	return nil
}

// waitListening runs the image's own check (`caddy listening PORT...`)
// in the container until it passes, and gives up when the container stops
// running, with what Caddy said.
func waitListening(ctx context.Context, api *client.Client, id string, ports []int) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cmd := []string{"/" + binary, "listening"}
	for _, p := range ports {
		cmd = append(cmd, strconv.Itoa(p))
	}
	for {
		in, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect the new proxy: %w", err)
		}
		if st := in.Container.State; st == nil || !st.Running || st.Restarting || in.Container.RestartCount > 0 {
			code := 0
			if st != nil {
				code = st.ExitCode
			}
			return fmt.Errorf("the proxy exited (%d): %s", code, logTail(ctx, api, id))
		}
		_, code, err := (&engine.Engine{API: api, Host: api.DaemonHost()}).Exec(ctx, id, cmd, 4<<10)
		if err == nil && code == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy does not listen on ports %v after %s: %s", ports, readyTimeout, logTail(context.WithoutCancel(ctx), api, id))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the last lines the container printed.
func logTail(ctx context.Context, api *client.Client, id string) string {
	return logLines(ctx, api, id, 10)
}

// logLines returns the last n lines the container printed, cleaned of
// terminal escapes and each cut to maxLogLine: they end up in errors, and a
// container may print anything, as long as it likes.
func logLines(ctx context.Context, api *client.Client, id string, n int) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return "(no logs: " + ui.Clean(err.Error()) + ")"
	}
	defer rc.Close()
	var lines []string
	w := ui.Lines(func(l string) {
		if l = ui.Shorten(strings.TrimSpace(ui.Clean(l)), maxLogLine); l == "" {
			return
		}
		if lines = append(lines, l); len(lines) > n {
			lines = lines[1:]
		}
	})
	_, err = stdcopy.StdCopy(w, w, rc)
	w.Close()
	if err != nil && len(lines) == 0 {
		return "(no logs: " + ui.Clean(err.Error()) + ")"
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, "\n")
}

// maxLogLine bounds each line of a log tail, in runes.
const maxLogLine = 400

// stop stops a container gracefully: SIGTERM, then SIGKILL after
// stopTimeout.
func stop(ctx context.Context, api *client.Client, id string) error {
	secs := int(stopTimeout / time.Second)
	ctx, cancel := context.WithTimeout(ctx, stopTimeout+30*time.Second)
	defer cancel()
	if _, err := api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil && !engine.IsNotFound(err) {
		return err
	}
	return nil
}

// discard removes a container this package created and does not keep,
// even when ctx has ended.
func discard(ctx context.Context, api *client.Client, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = api.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
}

// removeContainer stops (gracefully) and removes the project's proxy
// container called name, with its configuration volume, if there is one.
func removeContainer(ctx context.Context, api *client.Client, project, name string) error {
	c, err := ownContainer(ctx, api, project, name)
	if err != nil || c == nil {
		return err
	}
	if c.State != nil && c.State.Running {
		if err := stop(ctx, api, c.ID); err != nil {
			return fmt.Errorf("proxy of project %s: stop %s: %w", project, name, err)
		}
	}
	if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !engine.IsNotFound(err) {
		return fmt.Errorf("proxy of project %s: remove %s: %w", project, name, err)
	}
	return nil
}

// validate has Caddy check cfg (`caddy validate`) in a throwaway container
// of the proxy image ref, with no network, named after project. Ensure
// does this before it replaces a running proxy.
func validate(ctx context.Context, api *client.Client, project, ref string, cfg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	name := ContainerName(project) + "-validate"
	if err := removeContainer(ctx, api, project, name); err != nil {
		return err
	}
	host := hardened(project)
	host.NetworkMode = "none"
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: ref, Cmd: []string{"validate", "--config", configFile}, Env: env,
			Labels: map[string]string{labels.Proxy: project, labels.Project: project}},
		HostConfig: host,
	})
	if err != nil {
		return fmt.Errorf("proxy of project %s: validate the configuration: create: %w", project, err)
	}
	defer discard(ctx, api, created.ID)
	if err := copyConfig(ctx, api, created.ID, cfg); err != nil {
		return fmt.Errorf("proxy of project %s: validate the configuration: %w", project, err)
	}
	x, err := engine.RunToExit(ctx, api, created.ID)
	if err != nil {
		return fmt.Errorf("proxy of project %s: validate the configuration: %w", project, err)
	}
	if x.Status != 0 {
		return fmt.Errorf("proxy of project %s: caddy rejects the configuration: %s", project, caddyError(logTail(ctx, api, created.ID)))
	}
	return nil
}

// caddyError keeps the line of Caddy's output that says what is wrong:
// "Error: ..." after its log lines.
func caddyError(out string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error: ") {
			return strings.TrimPrefix(lines[i], "Error: ")
		}
	}
	return out
}

// Remove stops and removes the project's proxy (gracefully: requests in
// flight finish) and its edge network. Service containers still attached
// to the network are disconnected from it first; they keep running.
// Nothing that is not the project's proxy is touched: a foreign container
// or network of the same name is an error.
func Remove(ctx context.Context, api *client.Client, project string) error {
	if !catalog.ProjectName.MatchString(project) {
		return fmt.Errorf("proxy: project name %q is not a compose project name (a-z, 0-9, -, _)", project)
	}
	defer lock(api, project)()
	var errs []error
	for _, name := range []string{ContainerName(project), nextName(project), ContainerName(project) + "-validate"} {
		errs = append(errs, removeContainer(ctx, api, project, name))
	}
	ids, err := edgeNetworks(ctx, api, project)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range ids {
		n, err := api.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
		if err != nil && !engine.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("proxy of project %s: inspect network %s: %w", project, NetworkName(project), err))
			continue
		}
		for cid := range n.Network.Containers {
			if _, err := api.NetworkDisconnect(ctx, id, client.NetworkDisconnectOptions{Container: cid, Force: true}); err != nil && !engine.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("proxy of project %s: disconnect %s from %s: %w", project, engine.ShortID(cid), NetworkName(project), err))
			}
		}
		if _, err := api.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err != nil && !engine.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("proxy of project %s: remove network %s: %w", project, NetworkName(project), err))
		}
	}
	return errors.Join(errs...)
}

// Attach connects a service's container to the project's edge network
// under the service's alias, the Route.Service of its port: from then on
// the proxy sends it requests, alongside any other container with that
// alias. The container must be running and, when it has a healthcheck,
// healthy: the proxy has no health checks of its own beyond refused
// connections.
//
// The proxy picks the container up when it next resolves the alias, within
// PickupTime of Attach. To swap a service, wait that long (or until the new
// container is seen serving) before draining the previous container (Drain)
// and stopping it gracefully: draining it sooner loses no request either,
// but the requests of that moment wait for the new container. A container
// given the address of a drained one that is gone is put back in rotation.
//
// A container the engine still counts as starting is healthy when its own
// healthcheck passes now (the engine runs its first check only one
// interval after the start; see health.ProbeEvery).
//
// Attaching a container that is already attached with that alias does
// nothing.
func Attach(ctx context.Context, api *client.Client, project, containerID, alias string) error {
	if !catalog.DNSLabel.MatchString(alias) {
		return fmt.Errorf("proxy of project %s: alias %q is not a DNS label (a-z, 0-9, -; at most 63)", project, alias)
	}
	netID, err := findNetwork(ctx, api, project)
	if err != nil {
		return err
	}
	if netID == "" {
		return fmt.Errorf("proxy of project %s: no edge network %s: run proxy.Ensure first", project, NetworkName(project))
	}
	res, err := api.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("proxy of project %s: attach %s as %s: %w", project, containerID, alias, err)
	}
	c := res.Container
	what := fmt.Sprintf("proxy of project %s: attach %s (%s) as %s", project, strings.TrimPrefix(c.Name, "/"), engine.ShortID(c.ID), alias)
	if c.State == nil || !c.State.Running {
		return fmt.Errorf("%s: the container is not running: start it and wait until it is healthy", what)
	}
	if h := c.State.Health; h != nil && h.Status != container.Healthy && !passesNow(ctx, api, &c) {
		return fmt.Errorf("%s: the container is %s, not healthy: wait for its health first, or the proxy sends it requests it may fail", what, h.Status)
	}
	if c.NetworkSettings != nil {
		if ep := c.NetworkSettings.Networks[NetworkName(project)]; ep != nil {
			if slices.Contains(ep.Aliases, alias) {
				return nil
			}
			return fmt.Errorf("%s: the container is attached to %s already, under aliases %v: it serves one service only", what, NetworkName(project), ep.Aliases)
		}
	}
	if _, err := api.NetworkConnect(ctx, netID, client.NetworkConnectOptions{Container: c.ID,
		EndpointConfig: &network.EndpointSettings{Aliases: []string{alias}}}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	// The address may have been a drained container's, now gone.
	addrs, err := edgeAddrs(ctx, api, netID, []string{c.ID})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, a := range addrs {
		if err := undrain(ctx, api, project, a); err != nil {
			return fmt.Errorf("%s: put %s back in rotation: %w", what, a, err)
		}
	}
	return nil
}

// passesNow runs a starting container's own healthcheck: true when it
// passes.
func passesNow(ctx context.Context, api *client.Client, c *container.InspectResponse) bool {
	if c.State.Health.Status != container.Starting || c.Config == nil || c.Config.Healthcheck == nil {
		return false
	}
	eng := &engine.Engine{API: api, Host: api.DaemonHost()}
	_, ok, err := eng.RunHealthcheck(ctx, engine.Container{ID: c.ID, HealthTest: c.Config.Healthcheck.Test, HealthTimeout: c.Config.Healthcheck.Timeout})
	return ok && err == nil
}
