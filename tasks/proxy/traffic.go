package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/runtime"
)

// Traffic is the proxy of one project on one engine as the runtimes use it
// (runtime.Traffic).
type Traffic struct {
	API     *client.Client
	Project string
	// Bind is the host address the ports are published on ("" = all).
	Bind string
}

// For returns the proxy of the catalog's project on the engine, publishing
// on env's bind address.
func For(eng *engine.Engine, cat *catalog.Catalog, env *catalog.Environment) *Traffic {
	return &Traffic{API: eng.API, Project: cat.Project.Name, Bind: env.Bind}
}

// Ensure makes the proxy serve routes and, with join set, puts it on that
// network besides its edge network.
func (t *Traffic) Ensure(ctx context.Context, routes []runtime.Route, join string) error {
	spec := Spec{Project: t.Project, Bind: t.Bind}
	for _, r := range routes {
		spec.Routes = append(spec.Routes, Route{Service: r.Service, Port: r.TargetPort, Listen: r.ListenPort})
	}
	p, err := Ensure(ctx, t.API, spec)
	if err != nil {
		return err
	}
	if join == "" {
		return nil
	}
	in, err := t.API.ContainerInspect(ctx, p.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("proxy of project %s: %w", t.Project, err)
	}
	if ns := in.Container.NetworkSettings; ns != nil && ns.Networks[join] != nil {
		return nil
	}
	if _, err := t.API.NetworkConnect(ctx, join, client.NetworkConnectOptions{Container: p.ID}); err != nil {
		return fmt.Errorf("proxy of project %s: join the stack's network %s: %w", t.Project, join, err)
	}
	return nil
}

// Attach puts a container behind the proxy under the service's alias.
func (t *Traffic) Attach(ctx context.Context, containerID, alias string) error {
	return Attach(ctx, t.API, t.Project, containerID, alias)
}

// Drain takes containers out of rotation and waits, at most timeout, for
// their requests in flight to finish; open says what was still open then
// ("" when nothing was).
func (t *Traffic) Drain(ctx context.Context, ids []string, timeout time.Duration) (open string, err error) {
	return Drain(ctx, t.API, t.Project, ids, timeout)
}

// Attached lists the containers on the project's edge network.
func (t *Traffic) Attached(ctx context.Context) (map[string]bool, error) {
	id, err := findNetwork(ctx, t.API, t.Project)
	if err != nil || id == "" {
		return map[string]bool{}, err
	}
	res, err := t.API.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("proxy of project %s: %w", t.Project, err)
	}
	out := map[string]bool{}
	for cid := range res.Network.Containers {
		out[cid] = true
	}
	return out, nil
}

// PickUp is how long a swap waits after Attach before the old container
// is stopped: one Refresh, by when the proxy resolves the alias to the new
// container too, and a DialTimeout for its first connection. PickupTime
// would also cover a first connection that meets the new container before
// its interface answers; stopping the old one then loses no request
// either (refused ones are retried until the new one answers), it only
// makes the requests of that moment wait, so a swap does not wait for it.
func (t *Traffic) PickUp() time.Duration { return Refresh + DialTimeout }
