package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// drainHold is how much longer than the drain timeout a drained address
// stays out of rotation: long enough for the container to be stopped and
// removed, after which its address may go to a new container (Attach puts
// it back then). A run interrupted in between leaves a drain that ends by
// itself.
const drainHold = 2 * time.Minute

// Drain takes the containers out of the proxy's rotation, so that no new
// request reaches them while the ones in flight finish, and waits until
// the proxy has none in flight to them, at most timeout (0: do not wait).
// It returns what was still open then ("" when nothing was). Containers
// that are not on the edge network are left alone.
//
// The proxy learns of services by their DNS alias, which Docker cannot
// withdraw without disconnecting the container (cutting its requests), so
// the drain is a list the proxy program keeps on its own tmpfs and reads
// before each request: Drain runs `caddy drain` in the proxy container,
// through the Engine API. That program also counts the requests in flight,
// as the proxy's connections to the containers (it opens one per request).
func Drain(ctx context.Context, api *client.Client, project string, ids []string, timeout time.Duration) (open string, err error) {
	what := fmt.Sprintf("proxy of project %s: drain %s", project, shortIDs(ids))
	netID, err := findNetwork(ctx, api, project)
	if err != nil || netID == "" {
		return "", err
	}
	addrs, err := edgeAddrs(ctx, api, netID, ids)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(addrs) == 0 {
		return "", nil
	}
	cmd := append([]string{"/" + binary, "drain", "-wait", timeout.String(), "-hold", (timeout + drainHold).String()}, addrs...)
	out, code, err := proxyExec(ctx, api, project, cmd, timeout+time.Minute)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: %w", what, err)
	case code == 0:
		return "", nil
	case code == 1 && strings.Contains(out, "still open"):
		return out, nil
	}
	return "", fmt.Errorf("%s: caddy drain exited with %d: %s", what, code, out)
}

// undrain puts an address back in rotation: a new container may get the
// address of a drained one that is gone. A proxy that does not run has
// nothing drained (its list is on its tmpfs).
func undrain(ctx context.Context, api *client.Client, project, addr string) error {
	out, code, err := proxyExec(ctx, api, project, []string{"/" + binary, "drain", "-undo", addr}, time.Minute)
	if errors.Is(err, errNoProxy) {
		return nil
	}
	if err == nil && code != 0 {
		err = fmt.Errorf("caddy drain -undo exited with %d: %s", code, out)
	}
	return err
}

var errNoProxy = errors.New("the proxy is not running")

// proxyExec runs cmd in the project's running proxy container and returns
// its output, cleaned, and exit code.
func proxyExec(ctx context.Context, api *client.Client, project string, cmd []string, timeout time.Duration) (string, int, error) {
	c, err := ownContainer(ctx, api, project, ContainerName(project))
	if err != nil {
		return "", -1, err
	}
	if c == nil || c.State == nil || !c.State.Running {
		return "", -1, fmt.Errorf("%w: %s: promote starts it", errNoProxy, ContainerName(project))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	eng := &engine.Engine{API: api, Host: api.DaemonHost()}
	out, code, err := eng.Exec(ctx, c.ID, cmd, 4<<10)
	return strings.TrimSpace(ui.Clean(out)), code, err
}

// edgeAddrs returns the IPv4 addresses of the containers ids on the
// edge network netID, sorted; containers not on it have none.
func edgeAddrs(ctx context.Context, api *client.Client, netID string, ids []string) ([]string, error) {
	res, err := api.NetworkInspect(ctx, netID, client.NetworkInspectOptions{})
	if err != nil {
		return nil, err
	}
	var addrs []string
	for cid, ep := range res.Network.Containers {
		if slices.ContainsFunc(ids, func(id string) bool { return id == cid || strings.HasPrefix(cid, id) }) && ep.IPv4Address.IsValid() {
			addrs = append(addrs, ep.IPv4Address.Addr().String())
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

func shortIDs(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = engine.ShortID(id)
	}
	return strings.Join(s, ", ")
}
