package release

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// A swarm of several machines has no registry to pull from: a task that
// swarm schedules on a node whose engine lacks its image fails ("No such
// image"). So promote loads the images into every node's engine itself,
// the way it loads them into a single host: each node is reached over SSH
// (the environment's known_hosts and identity, the catalog's nodes list),
// and gets, in one `docker save` stream into its `docker load`, the images
// it lacks and only those.
//
// Before anything is sent anywhere, the nodes the manager lists and those
// the catalog names must agree: a node the catalog does not name, a named
// node that is not in the swarm, and a ready node that cannot be reached
// over SSH are all refused, together, in one error. A node the manager
// reports down is skipped with a warning: swarm schedules nothing there
// while it is down, and the next promote sends it what it lacks.

// SwarmReport is what a promote to a swarm environment saw of the swarm.
type SwarmReport struct {
	// Nodes are the swarm's nodes, the manager first, then as the
	// manager lists them.
	Nodes []*Node
	// Spread maps each service to the host names of the nodes its
	// running tasks are on after the release converged (one entry per
	// task).
	Spread map[string][]string
}

// Node is one node of a swarm as promote saw it.
type Node struct {
	// ID is the swarm node ID, Hostname the name its engine reports, Addr
	// its address as the manager sees it.
	ID, Hostname, Addr string
	// Role is "manager" or "worker"; State "ready", "down"...;
	// Availability "active", "pause" or "drain".
	Role, State, Availability string
	// Host is how promote reached it: the environment's host for the
	// manager, an entry of its nodes otherwise ("" when not reached).
	Host string
	// Transfer is what promote sent it (nil when skipped).
	Transfer *engine.TransferReport
	// Skipped says why it was sent nothing ("" when it was reached).
	Skipped string
}

// Name is how messages name a node: its host name and address.
func (n *Node) Name() string {
	if n.Addr == "" || n.Addr == n.Hostname {
		return n.Hostname
	}
	return n.Hostname + " (" + n.Addr + ")"
}

// describe names a node in full: host name, address, ID and state.
func (n *Node) describe() string {
	return fmt.Sprintf("%s (%s, node %s, %s)", n.Hostname, n.Addr, engine.ShortID(n.ID), n.State)
}

// NodesError is a swarm whose nodes do not match the catalog, or that
// promote cannot reach: nothing was sent or changed.
type NodesError struct {
	Env, Manager string
	Problems     []string
}

func (e *NodesError) Error() string {
	return fmt.Sprintf("the swarm behind %s (environment %s) does not match the catalog's nodes, or cannot be reached; nothing was sent or changed:\n  - %s",
		e.Manager, e.Env, strings.Join(e.Problems, "\n  - "))
}

// swarmNodes are the connected nodes of a swarm environment.
type swarmNodes struct {
	rep   *SwarmReport
	conns map[string]*nodeConn // by node ID, the manager included
}

type nodeConn struct {
	eng *engine.Engine
	ssh *sshSession
	own bool // closed by Close (not the manager's, which the target owns)
}

// Close ends the connections to the nodes.
func (s *swarmNodes) Close() {
	if s == nil {
		return
	}
	for _, c := range s.conns {
		if c.own {
			_ = c.eng.Close()
			_ = c.ssh.Close()
		}
	}
}

// Report is what promote saw of the swarm (nil for a non-swarm target).
func (s *swarmNodes) Report() *SwarmReport {
	if s == nil {
		return nil
	}
	return s.rep
}

// reached is the outcome of reaching one node the catalog names.
type reached struct {
	host string
	ips  []string
	eng  *engine.Engine
	ssh  *sshSession
	info swarm.Info
	err  error
}

// swarmNodes reaches the nodes of t's runtime, when it schedules over
// several (runtime.Nodes), and checks them against the manager's list; it
// is nil for any other runtime. It changes nothing anywhere.
func (t *target) swarmNodes(ctx context.Context) (*swarmNodes, error) {
	lister, multi := t.rt.(runtime.Nodes)
	if !multi {
		return nil, nil
	}
	t0 := time.Now()
	self, items, err := lister.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	s := &swarmNodes{rep: &SwarmReport{}, conns: map[string]*nodeConn{}}
	inSwarm := map[string]bool{}
	// Addresses of nodes the manager reports down, and of no other node:
	// a machine that left and joined again is listed twice.
	down, up := map[string]bool{}, map[string]bool{}
	for _, n := range items {
		inSwarm[n.ID] = true
		for _, a := range nodeAddrs(n) {
			if n.Status.State == swarm.NodeStateDown {
				down[a] = true
			} else {
				up[a] = true
			}
		}
	}
	for a := range up {
		delete(down, a)
	}

	// Reach every node the catalog names, at once; a node the manager
	// reports down is not tried (its machine may not answer at all).
	res := make([]*reached, len(t.env.Nodes))
	var wg sync.WaitGroup
	for i, h := range t.env.Nodes {
		r := &reached{host: h}
		res[i] = r
		r.ips = resolve(ctx, h)
		if slices.ContainsFunc(r.ips, func(ip string) bool { return down[ip] }) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.eng, r.ssh, r.info, r.err = t.reachNode(ctx, h)
		}()
	}
	wg.Wait()
	ok := false
	defer func() {
		if !ok {
			for _, r := range res {
				if r.eng != nil {
					_ = r.eng.Close()
					_ = r.ssh.Close()
				}
			}
		}
	}()

	var problems []string
	byID := map[string]*reached{}
	for _, r := range res {
		switch id := r.info.NodeID; {
		case r.err != nil || r.eng == nil:
		case id == "" || r.info.LocalNodeState != swarm.LocalNodeStateActive:
			problems = append(problems, fmt.Sprintf("node %s is not in a swarm (its swarm state is %q): join it to %s's swarm, or remove it from nodes",
				r.host, r.info.LocalNodeState, t.eng.Host))
		case id == self:
			problems = append(problems, fmt.Sprintf("node %s is the manager itself (node %s): remove it from nodes", r.host, engine.ShortID(id)))
		case !inSwarm[id]:
			problems = append(problems, fmt.Sprintf("node %s is in another swarm (its node %s is not among %s's nodes): remove it from nodes, or join it to this swarm",
				r.host, engine.ShortID(id), t.eng.Host))
		default:
			byID[id] = r
		}
	}
	byAddr := func(n swarm.Node) *reached {
		for _, r := range res {
			for _, a := range nodeAddrs(n) {
				if slices.Contains(r.ips, a) {
					return r
				}
			}
		}
		return nil
	}
	used := map[*reached]bool{}
	for _, n := range items {
		// What the manager says of its nodes is printed: cleaned.
		node := &Node{ID: n.ID, Hostname: ui.Clean(n.Description.Hostname), Addr: ui.Clean(n.Status.Addr), Role: ui.Clean(string(n.Spec.Role)),
			State: ui.Clean(string(n.Status.State)), Availability: ui.Clean(string(n.Spec.Availability))}
		switch r := byID[n.ID]; {
		case n.ID == self:
			node.Host = t.env.Host
			if node.Host == "" {
				node.Host = t.eng.Host
			}
			s.conns[n.ID] = &nodeConn{eng: t.eng}
			s.rep.Nodes = append([]*Node{node}, s.rep.Nodes...)
			continue
		case r != nil:
			used[r] = true
			node.Host = r.host
			s.conns[n.ID] = &nodeConn{eng: r.eng, ssh: r.ssh, own: true}
		case n.Status.State == swarm.NodeStateDown:
			r := byAddr(n)
			if r == nil {
				problems = append(problems, fmt.Sprintf("node %s is in the swarm but not in nodes: add its ssh://user@host:port to nodes, or remove it from the swarm (`docker node rm %s`)",
					node.describe(), engine.ShortID(n.ID)))
				break
			}
			used[r] = true
			node.Host = r.host
			node.Skipped = "down: swarm schedules nothing there while it is down; the next promote sends it what it lacks"
		default:
			r := byAddr(n)
			if r != nil && r.err != nil {
				used[r] = true
				problems = append(problems, fmt.Sprintf("node %s cannot be reached over SSH at %s: %v", node.describe(), r.host, r.err))
				break
			}
			problems = append(problems, fmt.Sprintf("node %s is in the swarm but not in nodes: promote could not send it images, and a task scheduled there would fail with \"No such image\"; "+
				"add its ssh://user@host:port to nodes, or remove it from the swarm (`docker node rm %s`)", node.describe(), engine.ShortID(n.ID)))
		}
		s.rep.Nodes = append(s.rep.Nodes, node)
	}
	for _, r := range res {
		if r.err != nil && !used[r] {
			problems = append(problems, fmt.Sprintf("node %s: %v", r.host, r.err))
		}
	}
	if len(problems) > 0 {
		return nil, &NodesError{Env: t.env.Name, Manager: t.eng.Host, Problems: problems}
	}
	ok = true
	reachable := 0
	for _, n := range s.rep.Nodes {
		if n.Skipped == "" {
			reachable++
		}
	}
	t.p.Line(ui.OK, "nodes", "%d node(s) in the swarm, %d reached (%s)", len(s.rep.Nodes), reachable, ui.Seconds(time.Since(t0)))
	for _, n := range s.rep.Nodes {
		if n.Skipped != "" {
			t.p.Line(ui.Warn, "nodes", "%s is %s", n.Name(), n.Skipped)
		}
	}
	return s, nil
}

// reachNode connects to one node over SSH as to the environment's host:
// its host key checked, then its engine, which says which node it is.
func (t *target) reachNode(ctx context.Context, host string) (*engine.Engine, *sshSession, swarm.Info, error) {
	nenv := *t.env
	nenv.Host = host
	s, err := newSSHSession(t.cat, &nenv)
	if err != nil {
		return nil, nil, swarm.Info{}, err
	}
	fail := func(err error) (*engine.Engine, *sshSession, swarm.Info, error) {
		_ = s.Close()
		return nil, nil, swarm.Info{}, err
	}
	remote, err := checkHostKey(ctx, t.cat, &nenv, s.flags)
	if err != nil {
		return fail(err)
	}
	eng, _, err := s.connectEngine(ctx, remote)
	if err != nil {
		return fail(err)
	}
	info, err := eng.API.Info(ctx, client.InfoOptions{})
	if err != nil {
		_ = eng.Close()
		return fail(fmt.Errorf("docker info on %s: %w", host, err))
	}
	return eng, s, info.Info.Swarm, nil
}

// nodeAddrs are the addresses the manager knows a node by.
func nodeAddrs(n swarm.Node) []string {
	var out []string
	if a := n.Status.Addr; a != "" && a != "0.0.0.0" {
		out = append(out, a)
	}
	if m := n.ManagerStatus; m != nil {
		if h, _, err := net.SplitHostPort(m.Addr); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// resolve returns the addresses of an ssh:// URL's machine.
func resolve(ctx context.Context, host string) []string {
	u, err := url.Parse(host)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return []string{ip.String()}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, _ := net.DefaultResolver.LookupHost(ctx, u.Hostname())
	return addrs
}

// transfer makes every ref exist on every reached node of the swarm (on
// the target's engine alone for any other environment), sending each node
// only the layers it lacks, the nodes at the same time. The report it
// returns sums the nodes: Sent are the refs sent to at least one node,
// Present those no node lacked, and the byte and layer counts are those of
// all of them.
func (s *swarmNodes) transfer(ctx context.Context, local, host *engine.Engine, refs []string, p *ui.Printer) (*engine.TransferReport, error) {
	if s == nil {
		return engine.Transfer(ctx, local, host, refs, p)
	}
	var nodes []*Node
	for _, n := range s.rep.Nodes {
		if s.conns[n.ID] != nil { // nil: skipped
			nodes = append(nodes, n)
		}
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			n.Transfer, errs[i] = engine.Transfer(ctx, local, s.conns[n.ID].eng, refs, p)
		})
	}
	wg.Wait()
	sum := &engine.TransferReport{}
	sent := map[string]bool{}
	var per []string
	for i, n := range nodes {
		if errs[i] != nil {
			return sum, fmt.Errorf("node %s: %w", n.Name(), errs[i])
		}
		rep := n.Transfer
		sum.Bytes += rep.Bytes
		sum.LayersSent += rep.LayersSent
		sum.LayerBytes += rep.LayerBytes
		sum.LayersSkipped += rep.LayersSkipped
		sum.SkippedBytes += rep.SkippedBytes
		for _, r := range rep.Sent {
			sent[r] = true
		}
		per = append(per, fmt.Sprintf("%s %s", n.Name(), ui.Bytes(rep.Bytes)))
	}
	p.Line(ui.OK, "images", "sent per node: %s", strings.Join(per, ", "))
	for _, r := range refs {
		if sent[r] {
			sum.Sent = append(sum.Sent, r)
		} else {
			sum.Present = append(sum.Present, r)
		}
	}
	return sum, nil
}

// spread says, after a converge, on which nodes each service's running
// tasks are, and warns of a replicated service whose tasks share fewer
// nodes than could run them: the loss of one node would then take more
// of it than needed. It warns rather than fails: the release is healthy,
// and putting the previous one back would not spread it better.
func (s *swarmNodes) spread(ctx context.Context, api *client.Client, cat *catalog.Catalog, p *ui.Printer) {
	if s == nil {
		return
	}
	project := cat.Project.Name
	names := map[string]string{}
	eligible := 0
	for _, n := range s.rep.Nodes {
		names[n.ID] = n.Hostname
		if n.State == string(swarm.NodeStateReady) && n.Availability == string(swarm.NodeAvailabilityActive) {
			eligible++
		}
	}
	svcs, err := api.ServiceList(ctx, client.ServiceListOptions{Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+project)})
	if err != nil {
		p.Line(ui.Warn, "spread", "cannot list the stack's services: %v", err)
		return
	}
	s.rep.Spread = map[string][]string{}
	var parts []string
	for _, svc := range svcs.Items {
		name := ui.Clean(strings.TrimPrefix(svc.Spec.Name, catalog.Scoped(project, "")))
		tasks, err := api.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.
			Add("service", svc.ID).Add("desired-state", "running")})
		if err != nil {
			p.Line(ui.Warn, "spread", "tasks of %s: %v", name, err)
			continue
		}
		var on []string
		for _, tk := range tasks.Items {
			if tk.Status.State == swarm.TaskStateRunning {
				h := names[tk.NodeID]
				if h == "" {
					h = engine.ShortID(tk.NodeID)
				}
				on = append(on, h)
			}
		}
		sort.Strings(on)
		s.rep.Spread[name] = on
		distinct := len(slices.Compact(slices.Clone(on)))
		parts = append(parts, fmt.Sprintf("%s %d on %d", name, len(on), distinct))
		if want := min(len(on), eligible); len(on) > 1 && distinct < want {
			hint := "set max_replicas_per_node = 1 on it to keep its replicas apart"
			if sv, ok := cat.Service(name); ok && sv.MaxReplicasPerNode > 0 {
				hint = "more nodes, or a lower max_replicas_per_node, spread it further"
			}
			p.Line(ui.Warn, "spread", "%s: its %d tasks run on %d node(s) of the %d that can run tasks (%s): %s",
				name, len(on), distinct, eligible, strings.Join(on, ", "), hint)
		}
	}
	sort.Strings(parts)
	p.Line(ui.OK, "spread", "tasks on nodes: %s (%d node(s) can run tasks)", strings.Join(parts, ", "), eligible)
}
