package check

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// probeSource is the probe's own code, built in a throwaway module so that
// building it needs nothing but a Go toolchain: no module download, no
// checkout of this repository.
//
//go:embed probe/probe.go probe/serve.go probe/cmd/probe/main.go
var probeSource embed.FS

// probeModule is the module path the embedded files import each other by.
const probeModule = "github.com/maestro-platform/deploy/tasks/check/probe"

// ProbeRepo is the repository probe images are tagged in; the tag is a
// hash of the probe's source and the engine's architecture, so an image
// is built once per probe version and engine.
const ProbeRepo = "maestro-deploy/probe"

// probeRepo is ProbeRepo, swapped by tests for a name of their own so that
// they can remove what they built.
var probeRepo = ProbeRepo

// labelProbe marks probe images and containers.
const labelProbe = "maestro-deploy.probe"

var probeBuilds sync.Map // ref -> *sync.Mutex: one build per image at a time

// EnsureProbe returns the reference of the network probe image on the
// engine api talks to, building it there first when it is missing.
//
// The probe is compiled here (CGO_ENABLED=0, GOOS=linux, GOARCH of that
// engine) by the Go toolchain in PATH, and sent to the engine as a FROM
// scratch build context through ImageBuild. This works the same on a
// remote engine reached over ssh: the image is built on that host from the
// context sent through the API, with no registry and no ImageSave/Load
// step. Run calls it; release code may call it ahead of time.
func EnsureProbe(ctx context.Context, api *client.Client) (string, error) {
	ver, err := api.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", fmt.Errorf("probe image: engine version: %w", err)
	}
	if ver.Os != "" && ver.Os != "linux" {
		return "", fmt.Errorf("probe image: engine runs %s containers; the probe needs linux", ver.Os)
	}
	arch := ver.Arch
	if arch == "" {
		arch = "amd64"
	}
	hash, err := probeHash(arch)
	if err != nil {
		return "", err
	}
	ref := probeRepo + ":" + hash[:12]
	mu, _ := probeBuilds.LoadOrStore(ref, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if _, err := api.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("probe image %s: %w", ref, err)
	}
	tarball, err := buildProbe(ctx, arch)
	if err != nil {
		return "", fmt.Errorf("probe image %s: %w", ref, err)
	}
	res, err := api.ImageBuild(ctx, bytes.NewReader(tarball), client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true,
		Labels: map[string]string{labelProbe: hash}})
	if err != nil {
		return "", fmt.Errorf("probe image %s: build: %w", ref, err)
	}
	defer res.Body.Close()
	if err := buildStreamError(res.Body); err != nil {
		return "", fmt.Errorf("probe image %s: build: %w", ref, err)
	}
	return ref, nil
}

// buildStreamError reads an ImageBuild response to its end and returns the
// error the engine reported in it, if any: a failed build still answers
// 200 and says so in the stream.
func buildStreamError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(strings.TrimSpace(m.Error))
		}
	}
}

func probeHash(arch string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "linux/%s\n", arch)
	err := fs.WalkDir(probeSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := probeSource.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("probe source: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildProbe compiles the probe and returns a build context tar holding
// it and its Dockerfile.
func buildProbe(ctx context.Context, arch string) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("building the network probe needs the Go toolchain, and go is not in PATH")
	}
	dir, err := os.MkdirTemp("", "maestro-probe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	err = fs.WalkDir(probeSource, "probe", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := probeSource.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(p, "probe/")))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+probeModule+"\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "probe.bin")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/probe")
	cmd.Dir = dir
	// The throwaway module has no dependencies: nothing from the caller's
	// workspace, vendor folder or toolchain switching may apply to it.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch,
		"GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build probe: %w: %s", err, strings.TrimSpace(string(out)))
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY probe /probe\nUSER 65534\nENTRYPOINT [\"/probe\"]\n")},
		{"probe", 0o755, binary},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)),
			ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ProjectNetwork finds the network the services of a compose project (or
// swarm stack) share under the catalog's network name. Compose v1 and v2
// name it "<project>_<network>" and label it; swarm names it
// "<stack>_<network>". When no labelled network matches, the conventional
// name is returned if it exists.
func ProjectNetwork(ctx context.Context, api *client.Client, project, name string) (string, error) {
	f := make(client.Filters).Add("label", labelProject+"="+project, "com.docker.compose.network="+name)
	res, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return "", fmt.Errorf("find network %s of %s: %w", name, project, err)
	}
	if len(res.Items) > 0 {
		return res.Items[0].Name, nil
	}
	conventional := project + "_" + name
	if _, err := api.NetworkInspect(ctx, conventional, client.NetworkInspectOptions{}); err == nil {
		return conventional, nil
	}
	return "", fmt.Errorf("no network %q of project %s (is the stack up?)", name, project)
}

// runNetwork performs the network checks in one probe container on the
// stack's network: a one-shot container, or with Target.ReuseProbe on a
// local engine the project's long-running probe server.
func runNetwork(ctx context.Context, cat *catalog.Catalog, t Target, jobs []*job, results []Result, printer *ui.Printer) {
	fail := func(detail string) {
		for _, j := range jobs {
			results[j.idx].Detail = detail
		}
	}
	netName := t.Network
	if netName == "" {
		n, err := ProjectNetwork(ctx, t.API, t.Project, cat.Project.Network)
		if err != nil {
			fail(err.Error())
			return
		}
		netName = n
	}
	ref, err := EnsureProbe(ctx, t.API)
	if err != nil {
		fail(err.Error())
		return
	}
	specs := make([]probe.Spec, len(jobs))
	var longest time.Duration
	for i, j := range jobs {
		specs[i] = j.spec
		specs[i].ID = strconv.Itoa(j.idx)
		if d := worstCase(j.spec); d > longest {
			longest = d
		}
	}
	// Container start and removal take a second or two on top of the
	// checks themselves.
	pctx, cancel := context.WithTimeout(ctx, longest+time.Minute)
	defer cancel()
	var outcomes []probe.Outcome
	if t.ReuseProbe && LocalEngine(t.API) {
		outcomes, err = runServed(pctx, t.API, ref, netName, t.Project, specs)
		// A server that cannot be started or reached (a local engine whose
		// published ports are not on this machine's loopback, say) costs
		// speed, not the checks.
		if err != nil && pctx.Err() == nil {
			if printer != nil {
				printer.Line(ui.Warn, "probe server", "%v; using a one-shot probe", err)
			}
			outcomes, err = runProbe(pctx, t.API, ref, netName, t.Project, specs)
		}
	} else {
		outcomes, err = runProbe(pctx, t.API, ref, netName, t.Project, specs)
	}
	if err != nil {
		fail(err.Error())
		return
	}
	got := map[string]probe.Outcome{}
	for _, o := range outcomes {
		got[o.ID] = o
	}
	for _, j := range jobs {
		o, ok := got[strconv.Itoa(j.idx)]
		if !ok {
			results[j.idx].Detail = "the probe returned no result for this check"
			continue
		}
		setOutcome(&results[j.idx], o)
	}
}

// worstCase is how long a spec may take with every attempt timing out.
func worstCase(s probe.Spec) time.Duration {
	d := time.Duration(s.TimeoutMS) * time.Millisecond
	if d <= 0 {
		d = 2 * time.Second
	}
	total := d * time.Duration(s.Retries+1)
	for n := 1; n <= s.Retries; n++ {
		total += probe.Backoff(n)
	}
	return total
}

// runProbe runs the probe container once and returns what it printed.
func runProbe(ctx context.Context, api *client.Client, ref, netName, project string, specs []probe.Spec) ([]probe.Outcome, error) {
	arg, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: ref, Cmd: []string{string(arg)},
			// Not the compose project label: compose would take the probe
			// for an orphan of the project.
			Labels: map[string]string{labelProbe: project}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(netName)},
		NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}},
	})
	if err != nil {
		return nil, fmt.Errorf("probe on network %s: create: %w", netName, err)
	}
	defer func() {
		// Removed even when ctx has ended: the probe is ours to clean up.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = api.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true})
	}()
	wait := api.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := api.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("probe on network %s: start: %w", netName, err)
	}
	var exit int64
	select {
	case r := <-wait.Result:
		exit = r.StatusCode
	case err := <-wait.Error:
		return nil, fmt.Errorf("probe on network %s: wait: %w", netName, err)
	}
	logs, err := api.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("probe on network %s: logs: %w", netName, err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		return nil, fmt.Errorf("probe on network %s: logs: %w", netName, err)
	}
	if exit != 0 {
		return nil, fmt.Errorf("probe on network %s exited %d: %s", netName, exit, strings.TrimSpace(stderr.String()))
	}
	var out []probe.Outcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("probe on network %s: bad output: %w", netName, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
