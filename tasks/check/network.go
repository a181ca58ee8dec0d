package check

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
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
const ProbeRepo = probe.ImageRepo

// probeRepo is ProbeRepo, swapped by tests for a name of their own so that
// they can remove what they built.
var probeRepo = ProbeRepo

// EnsureProbe returns the reference of the network probe image on the
// engine api talks to, building it there first when it is missing.
//
// The probe is compiled here (CGO_ENABLED=0, GOOS=linux, GOARCH of that
// engine) by the Go toolchain in PATH, and sent to the engine as a FROM
// scratch build context through ImageBuild (engine.EnsureGoImage). This
// works the same on a remote engine reached over ssh: the image is built on
// that host from the context sent through the API, with no registry and no
// ImageSave/Load step. Run calls it; release code may call it ahead of time.
func EnsureProbe(ctx context.Context, api *client.Client) (string, error) {
	return engine.EnsureGoImage(ctx, api, engine.GoImage{
		Name:    "network probe",
		Repo:    probeRepo,
		Source:  probeSource,
		Dir:     "probe",
		Module:  probeModule,
		Package: "./cmd/probe",
		Binary:  "probe",
		// The probe only makes requests: nobody, not root.
		User:      "65534",
		HashLabel: labels.Probe,
	})
}

// PrepareProbe builds the network probe's image when the catalog has a
// network check and the engine lacks the image, so that deployAll builds
// it while up waits for the services rather than when testAll needs it.
// EnsureProbe after it finds the image (or waits for this build).
func PrepareProbe(ctx context.Context, cat *catalog.Catalog, api *client.Client) error {
	for _, s := range cat.All() {
		for _, c := range s.Checks {
			if c.Kind == catalog.CheckNetwork {
				_, err := EnsureProbe(ctx, api)
				return err
			}
		}
	}
	return nil
}

// ProjectNetwork finds the network the services of a compose project (or
// swarm stack) share under the catalog's network name. Compose v1 and v2
// name it "<project>_<network>" and label it; swarm names it
// "<stack>_<network>". When no labelled network matches, the conventional
// name is returned if it exists.
func ProjectNetwork(ctx context.Context, api *client.Client, project, name string) (string, error) {
	f := make(client.Filters).Add("label", labels.ComposeProject+"="+project, labels.ComposeNetwork+"="+name)
	res, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return "", fmt.Errorf("find network %s of %s: %w", name, project, err)
	}
	if len(res.Items) > 0 {
		return res.Items[0].Name, nil
	}
	conventional := catalog.Scoped(project, name)
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
		if d := j.spec.WorstCase(); d > longest {
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
	} else if t.ReuseProbe {
		outcomes, err = runExec(pctx, t.API, ref, netName, t.Project, specs)
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
			Labels: map[string]string{labels.Probe: project}},
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
	x, err := engine.RunToExit(ctx, api, created.ID)
	if err != nil {
		return nil, fmt.Errorf("probe on network %s: %w", netName, err)
	}
	if x.Status != 0 {
		// Its stderr is printed: cleaned and bounded.
		return nil, fmt.Errorf("probe on network %s exited %d: %s", netName, x.Status, ui.Shorten(ui.Clean(strings.TrimSpace(string(x.Stderr))), 2000))
	}
	var out []probe.Outcome
	if err := json.Unmarshal(x.Stdout, &out); err != nil {
		return nil, fmt.Errorf("probe on network %s: bad output: %w", netName, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
