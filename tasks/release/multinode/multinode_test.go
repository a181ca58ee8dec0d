// Package multinode_test is the multi-node swarm promotion test: a package
// of its own so that it runs beside tasks/release's promotion tests
// (go test runs packages in parallel), each with its own hosts.
package multinode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// mnCatalog is the three-node swarm's catalog: the manager is host, the
// two workers are nodes; every service runs 2 replicas, at most one per
// node. The proxy on the manager publishes template-service and
// quality-fabric (the tasks publish nothing, so publish_mode changes
// nothing here: it is written because dnsrr requires "host").
const mnCatalog = `
[project]
name = %[1]q
deploy_dir = %[2]q

[environments.dev]
ports = "dev"
bind = "127.0.0.1"

[environments.mn]
ports = "mn"
engine = "swarm"
endpoint_mode = "dnsrr"
publish_mode = "host"
host = %[3]q
nodes = [%[4]q, %[5]q]
dir = %[6]q
known_hosts = %[7]q
identity = %[8]q
health_timeout = "5m"

[[infrastructure]]
name = "state-store"
source = "%[9]s/infrastructure/state-store"
port = 6380
replicas = 2
max_replicas_per_node = 1
healthcheck = ["/app", "-healthcheck"]
volumes = ["state-data:/data"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[9]s/infrastructure/state-store", "%[9]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "state-store", PORT = "6380", DATA_DIR = "/data" }

[[services]]
name = "template-service"
source = "%[9]s/services/template-service"
port = 8005
dev_port = %[10]d
ports = { mn = 8005 }
replicas = 2
max_replicas_per_node = 1
healthcheck = ["/app", "-healthcheck"]
depends_on = ["state-store"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[9]s/services/template-service", "%[9]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "template-service", PORT = "8005", UPSTREAMS = "state-store=http://state-store:6380" }

  [[services.checks]]
  name = "reaches state-store"
  kind = "network"
  path = "/call/state-store"
  contains = "\"ok\":true"

[[services]]
name = "quality-fabric"
source = "%[9]s/quality-fabric"
port = 8000
dev_port = %[11]d
ports = { mn = 8000 }
replicas = 2
max_replicas_per_node = 1
healthcheck = ["/app", "-healthcheck"]
depends_on = ["template-service"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[9]s/quality-fabric", "%[9]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "quality-fabric", PORT = "8000", UPSTREAMS = "template-service=http://template-service:8005" }
`

// mnFixture is a three-node swarm and a catalog that deploys to it.
type mnFixture struct {
	sw      *testenv.Swarm
	cat     *catalog.Catalog
	local   *engine.Engine
	mgr     *client.Client            // the manager's engine, on its own socket
	byNode  map[string]*client.Client // each node's engine, by swarm node ID
	nameOf  map[string]string         // node ID -> "manager", "worker1"...
	ids     []string                  // node IDs, in sw.Nodes order
	project string
	deploy  string
	state   string
	out     bytes.Buffer
	clock   time.Time
}

const mnReplicas = 2

// mnServices are the stack's services, each with mnReplicas replicas.
var mnServices = []string{"state-store", "template-service", "quality-fabric"}

func TestMultinodeSwarm(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	var sw *testenv.Swarm
	// Registered first, so it runs last: after the swarm's own cleanup,
	// nothing of it is left on this machine.
	t.Cleanup(func() { mnTornDown(t, sw) })
	sw = testenv.StartSwarm(t, 3)
	f := mnSetup(t, sw)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	f.build(ctx, t, "")
	env := f.cat.Environments["mn"]
	w2 := sw.Workers()[1]

	t.Run("a node the catalog does not name, or cannot reach, is refused before anything changes", func(t *testing.T) {
		f.passTestAll(ctx, t)
		nodes := env.Nodes
		defer func() { env.Nodes = nodes }()
		env.Nodes = nodes[:1]
		_, err := release.Promote(ctx, f.cat, f.opts("mn"))
		var ne *release.NodesError
		want := fmt.Sprintf("(%s, node %s, ready) is in the swarm but not in nodes", w2.Addr, f.nodeIDOf(t, w2)[:12])
		if !errors.As(err, &ne) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "No such image") ||
			!strings.Contains(err.Error(), "nothing was sent or changed") {
			t.Fatalf("err = %v, want a NodesError saying %q\n%s", err, want, f.out.String())
		}
		t.Logf("unnamed node:\n%v", err)
		f.unchanged(ctx, t)

		// The second worker's host key is not in known_hosts: refused too.
		env.Nodes = nodes
		kh := env.KnownHosts
		defer func() { env.KnownHosts = kh }()
		b, err := os.ReadFile(kh)
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.HasPrefix(l, "["+w2.Addr+"]") {
				keep = append(keep, l)
			}
		}
		env.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(env.KnownHosts, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = release.Promote(ctx, f.cat, f.opts("mn"))
		want = fmt.Sprintf("cannot be reached over SSH at %s: host key for %s:2222 is not in", env.Nodes[1], w2.Addr)
		if !errors.As(err, &ne) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want a NodesError saying %q\n%s", err, want, f.out.String())
		}
		t.Logf("unreachable node:\n%v", err)
		f.unchanged(ctx, t)
	})

	var first *release.Result
	t.Run("first promote: each node gets the images it lacks; every replica healthy, spread over nodes", func(t *testing.T) {
		f.passTestAll(ctx, t)
		res, err := release.Promote(ctx, f.cat, f.opts("mn"))
		if err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		t.Logf("output:\n%s", f.out.String())
		first = res
		if res.Swarm == nil || len(res.Swarm.Nodes) != 3 {
			t.Fatalf("swarm report %+v, want 3 nodes", res.Swarm)
		}
		for _, n := range res.Swarm.Nodes {
			if n.Transfer == nil || len(n.Transfer.Sent) != 3 || n.Transfer.Bytes == 0 {
				t.Errorf("node %s (%s) was sent %+v, want all 3 images", n.Name(), f.nameOf[n.ID], n.Transfer)
				continue
			}
			t.Logf("FIGURE first promote: %s (%s) sent %d images, %d bytes", f.nameOf[n.ID], n.Addr, len(n.Transfer.Sent), n.Transfer.Bytes)
		}
		if res.Checks == nil || res.Checks.Failed != 0 || res.Checks.Passed == 0 {
			t.Fatalf("checks: %+v", res.Checks)
		}
		on := f.spread(ctx, t, "")
		for _, svc := range mnServices {
			if got := len(res.Swarm.Spread[svc]); got != mnReplicas {
				t.Errorf("report: %s runs %v, want %d tasks", svc, res.Swarm.Spread[svc], mnReplicas)
			}
			t.Logf("%s runs on %v", svc, on[svc])
		}
		if !strings.Contains(f.out.String(), "tasks on nodes: quality-fabric 2 on 2, state-store 2 on 2, template-service 2 on 2") {
			t.Errorf("output:\n%s", f.out.String())
		}
	})
	if first == nil {
		t.FailNow()
	}

	t.Run("status, logs and doctor -env see every node", func(t *testing.T) {
		rows, err := release.Status(ctx, f.cat, f.opts("mn"))
		if err != nil {
			t.Fatalf("status: %v\n%s", err, f.out.String())
		}
		nodes := map[string]bool{}
		tasks := map[string]int{}
		for _, r := range rows {
			if r.Service == release.ProxyRow {
				continue
			}
			tasks[r.Service]++
			nodes[r.Node] = true
			if !r.Healthy || r.Node == "" || r.Release != first.Release {
				t.Errorf("status row %+v, want a healthy task of %s on a node", r, first.Release)
			}
		}
		for _, svc := range mnServices {
			if tasks[svc] != mnReplicas {
				t.Errorf("status shows %d tasks of %s, want %d", tasks[svc], svc, mnReplicas)
			}
		}
		if len(nodes) < 2 {
			t.Errorf("status shows tasks on nodes %v, want them spread", nodes)
		}
		var logs bytes.Buffer
		o := f.opts("mn")
		o.Printer = ui.Plain(&logs)
		if err := release.Logs(ctx, f.cat, o, mnServices, engine.LogOptions{Tail: 5}); err != nil {
			t.Fatalf("logs: %v", err)
		}
		for _, svc := range mnServices {
			if !strings.Contains(logs.String(), svc+" ") || !strings.Contains(logs.String(), "| ") {
				t.Errorf("logs lack %s's tasks:\n%s", svc, logs.String())
			}
		}
		if err := release.Doctor(ctx, f.cat, f.opts("mn")); err != nil || !strings.Contains(f.out.String(), "swarm manager; 3 node(s)") {
			t.Errorf("doctor: %v\n%s", err, f.out.String())
		}
	})

	t.Run("prune removes a stale image from every node and keeps the release's", func(t *testing.T) {
		qf, _ := f.cat.Service("quality-fabric")
		stale := f.cat.ImageRepo(qf) + ":stale-prune"
		var planted []string
		for _, id := range f.ids {
			api := f.byNode[id]
			cs, err := api.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs.Items) == 0 {
				continue // no task landed here
			}
			if _, err := api.ContainerCommit(ctx, cs.Items[0].ID, client.ContainerCommitOptions{Reference: stale, NoPause: true}); err != nil {
				t.Fatal(err)
			}
			planted = append(planted, id)
		}
		if len(planted) < 2 {
			t.Fatalf("stale image planted on %d nodes, want the tasks' nodes (at least 2)", len(planted))
		}
		res, err := release.Prune(ctx, f.cat, f.opts("mn"))
		if err != nil {
			t.Fatalf("prune: %v\n%s", err, f.out.String())
		}
		if n := slices.Index(res.Images, stale); n < 0 || len(slices.DeleteFunc(slices.Clone(res.Images), func(s string) bool { return s != stale })) != len(planted) {
			t.Errorf("prune removed %v, want %s from each of %d nodes\n%s", res.Images, stale, len(planted), f.out.String())
		}
		for _, id := range f.ids {
			if _, err := f.byNode[id].ImageInspect(ctx, stale); !engine.IsNotFound(err) {
				t.Errorf("%s still has %s: %v", f.nameOf[id], stale, err)
			}
			for svc, ref := range first.Images {
				if _, err := f.byNode[id].ImageInspect(ctx, ref); err != nil {
					t.Errorf("prune removed %s's image %s from %s: %v", svc, ref, f.nameOf[id], err)
				}
			}
		}
	})

	t.Run("unchanged promote sends nothing to any node, replaces nothing, fails no request", func(t *testing.T) {
		before := f.taskIDs(ctx, t)
		var res *release.Result
		st := f.load(t, func() {
			var err error
			if res, err = release.Promote(ctx, f.cat, f.opts("mn")); err != nil {
				t.Errorf("promote: %v\n%s", err, f.out.String())
			}
		})
		testenv.NoFailures(t, "unchanged promote", st)
		if res == nil {
			t.FailNow()
		}
		for _, n := range res.Swarm.Nodes {
			if n.Transfer == nil || len(n.Transfer.Sent) != 0 || n.Transfer.Bytes != 0 || len(n.Transfer.Present) != 3 {
				t.Errorf("node %s: transfer %+v, want nothing sent, 3 present", f.nameOf[n.ID], n.Transfer)
			}
			t.Logf("FIGURE unchanged promote: %s sent %d bytes", f.nameOf[n.ID], n.Transfer.Bytes)
		}
		if res.Changes.Changed() || res.Transfer.Bytes != 0 {
			t.Errorf("changes %s, %d bytes sent; want none", res.Changes.Summary(), res.Transfer.Bytes)
		}
		if after := f.taskIDs(ctx, t); !slices.Equal(before, after) {
			t.Errorf("tasks changed: %v -> %v", before, after)
		}
	})

	t.Run("one changed image: sent to each node, only its service replaced, no failed request", func(t *testing.T) {
		ids := f.build(ctx, t, f.project+"-2")
		f.passTestAll(ctx, t)
		var res *release.Result
		st := f.load(t, func() {
			var err error
			if res, err = release.Promote(ctx, f.cat, f.opts("mn")); err != nil {
				t.Errorf("promote: %v\n%s", err, f.out.String())
			}
		})
		testenv.NoFailures(t, "one-service promote", st)
		if res == nil {
			t.FailNow()
		}
		for _, n := range res.Swarm.Nodes {
			if n.Transfer == nil || len(n.Transfer.Sent) != 1 || !strings.HasPrefix(n.Transfer.Sent[0], f.project+"/quality-fabric:") {
				t.Errorf("node %s was sent %+v, want quality-fabric alone", f.nameOf[n.ID], n.Transfer)
				continue
			}
			t.Logf("FIGURE one changed image: %s sent %d bytes", f.nameOf[n.ID], n.Transfer.Bytes)
		}
		if res.Changes.Count(runtime.Replace) != 1 || res.Changes.Count(runtime.Keep) != 2 {
			t.Errorf("changes %s, want quality-fabric alone replaced", res.Changes.Summary())
		}
		f.spread(ctx, t, "")
		f.runsImage(ctx, t, "quality-fabric", ids["quality-fabric"])
	})

	// The first worker holding tasks is drained; its tasks move to the
	// node that had none of them (at most one replica per node).
	t.Run("drain: the node's tasks move, no request fails, checks stay green", func(t *testing.T) {
		drained := f.busiestWorker(ctx, t)
		t0 := time.Now()
		var took time.Duration
		st := f.load(t, func() {
			f.availability(ctx, t, drained, swarm.NodeAvailabilityDrain)
			took = f.waitConverged(ctx, t, drained, t0, mnSafetyBound)
		})
		testenv.NoFailures(t, "drain", st)
		t.Logf("FIGURE drain of %s: every service back to %d healthy tasks off it after %s; %d requests, %d failed",
			f.nameOf[drained], mnReplicas, took.Round(100*time.Millisecond), st.Total, st.Failed)
		f.checksGreen(ctx, t)
		f.availability(ctx, t, drained, swarm.NodeAvailabilityActive)
	})

	// A worker's engine stops: swarm notices the node down after its
	// heartbeat times out, and starts its tasks on the other nodes.
	var lost int
	t.Run("node loss: a worker's engine stops; its tasks recover on the others, checks green again", func(t *testing.T) {
		lostID := f.busiestWorker(ctx, t)
		lost = slices.IndexFunc(sw.Nodes, func(r *testenv.Remote) bool { return f.nodeIDOf(t, r) == lostID })
		var stopped, down, recovered time.Duration
		st := f.load(t, func() {
			t0 := time.Now()
			downc := make(chan time.Duration, 1)
			go func() { downc <- f.waitDown(ctx, lostID, t0, mnSafetyBound) }()
			sw.StopEngine(t, lost)
			stopped = time.Since(t0)
			recovered = f.waitConverged(ctx, t, lostID, t0, mnSafetyBound)
			down = <-downc
		})
		t.Logf("FIGURE node loss of %s: engine stopped after %s, manager lists it down after %s, every service back to %d healthy tasks after %s; %d requests, %d failed",
			f.nameOf[lostID], stopped.Round(100*time.Millisecond), down.Round(100*time.Millisecond), mnReplicas,
			recovered.Round(100*time.Millisecond), st.Total, st.Failed)
		if st.Failed > 0 {
			t.Logf("requests failed while the node went away:\n%s", st)
		}
		f.checksGreen(ctx, t)
	})

	t.Run("doctor -env names the node that is down", func(t *testing.T) {
		if lost < 1 {
			t.Skip("no worker was stopped")
		}
		err := release.Doctor(ctx, f.cat, f.opts("mn"))
		if err == nil || !strings.Contains(f.out.String(), "swarm nodes not ready") {
			t.Errorf("doctor with a worker down: %v\n%s", err, f.out.String())
		}
	})

	var third *release.Result
	t.Run("promote while a worker is down: succeeds on the others, the previous release serves throughout", func(t *testing.T) {
		if lost < 1 {
			t.Skip("no worker was stopped")
		}
		ids := f.build(ctx, t, f.project+"-3")
		f.passTestAll(ctx, t)
		var res *release.Result
		st := f.load(t, func() {
			var err error
			if res, err = release.Promote(ctx, f.cat, f.opts("mn")); err != nil {
				t.Errorf("promote: %v\n%s", err, f.out.String())
			}
		})
		t.Logf("output:\n%s", f.out.String())
		testenv.NoFailures(t, "promote with a node down", st)
		if res == nil {
			t.FailNow()
		}
		third = res
		downID := f.nodeIDOf(t, sw.Nodes[lost])
		for _, n := range res.Swarm.Nodes {
			switch {
			case n.ID == downID:
				if n.Transfer != nil || !strings.Contains(n.Skipped, "down") {
					t.Errorf("the down node %s: transfer %+v, skipped %q", f.nameOf[n.ID], n.Transfer, n.Skipped)
				}
			case n.Transfer == nil || len(n.Transfer.Sent) != 1:
				t.Errorf("node %s was sent %+v, want quality-fabric alone", f.nameOf[n.ID], n.Transfer)
			default:
				t.Logf("FIGURE promote with %s down: %s sent %d bytes", f.nameOf[downID], f.nameOf[n.ID], n.Transfer.Bytes)
			}
		}
		if !strings.Contains(f.out.String(), "down: swarm schedules nothing there") {
			t.Errorf("output does not say the node is down:\n%s", f.out.String())
		}
		f.spread(ctx, t, downID)
		f.runsImage(ctx, t, "quality-fabric", ids["quality-fabric"])
		f.checksGreen(ctx, t)
	})

	t.Run("the worker comes back: the next promote sends it only what it lacks", func(t *testing.T) {
		if third == nil {
			t.Skip("no promote with a node down")
		}
		back := f.nodeIDOf(t, sw.Nodes[lost])
		t0 := time.Now()
		sw.StartEngine(t, lost)
		sw.WaitReady(t, 90*time.Second)
		t.Logf("FIGURE %s ready again %s after its engine started", f.nameOf[back], time.Since(t0).Round(100*time.Millisecond))
		res, err := release.Promote(ctx, f.cat, f.opts("mn"))
		if err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		for _, n := range res.Swarm.Nodes {
			want := 0
			if n.ID == back {
				want = 1
			}
			if n.Transfer == nil || len(n.Transfer.Sent) != want {
				t.Errorf("node %s was sent %+v, want %d image(s)", f.nameOf[n.ID], n.Transfer, want)
				continue
			}
			t.Logf("FIGURE after %s came back: %s sent %v, %d bytes", f.nameOf[back], f.nameOf[n.ID], n.Transfer.Sent, n.Transfer.Bytes)
		}
		if res.Changes.Changed() {
			t.Errorf("changes %s, want none", res.Changes.Summary())
		}
		f.checksGreen(ctx, t)
	})

	t.Run("rollback, then promote -release forward again, with no failed request", func(t *testing.T) {
		if third == nil {
			t.Skip("no third release")
		}
		rels, err := release.Releases(ctx, f.cat, f.opts("mn"))
		if err != nil {
			t.Fatal(err)
		}
		cur := ""
		for _, r := range rels {
			if r.Current {
				cur = r.ID
			}
		}
		// Back past the releases with third's image (the worker's return
		// made an unchanged one), to the one before it.
		st := f.load(t, func() {
			for err == nil && !strings.Contains(f.out.String(), "replaced (quality-fabric)") {
				err = release.Rollback(ctx, f.cat, f.opts("mn"))
			}
		})
		if err != nil {
			t.Fatalf("rollback: %v\n%s", err, f.out.String())
		}
		testenv.NoFailures(t, "rollback on the swarm", st)
		o := f.opts("mn")
		o.Release = cur
		st = f.load(t, func() { err = release.Rollback(ctx, f.cat, o) })
		if err != nil {
			t.Fatalf("promote -release=%s: %v\n%s", cur, err, f.out.String())
		}
		testenv.NoFailures(t, "promote -release on the swarm", st)
		want, err := f.local.ImageID(ctx, third.Images["quality-fabric"])
		if err != nil {
			t.Fatal(err)
		}
		f.runsImage(ctx, t, "quality-fabric", want)
		if rep, err := release.TestAll(ctx, f.cat, f.opts("mn")); err != nil || rep.Failed != 0 {
			t.Errorf("testAll -env after promote -release: %v\n%s", err, f.out.String())
		}
	})

	t.Run("a changed top layer on a base of 100 MB: each node is sent that layer alone", func(t *testing.T) {
		qf, _ := f.cat.Service("quality-fabric")
		base := f.buildOn(ctx, t, f.project+"/bigbase", f.cat.ImageRef(qf), "random.bin", string(testenv.Incompressible("base", 100<<20))).Ref
		var id string
		promote := func(version string) *release.Result {
			t.Helper()
			id = f.buildOn(ctx, t, f.cat.ImageRepo(qf), base, "version.txt", version).ImageID
			f.passTestAll(ctx, t)
			res, err := release.Promote(ctx, f.cat, f.opts("mn"))
			if err != nil {
				t.Fatalf("promote: %v\n%s", err, f.out.String())
			}
			return res
		}
		res := promote("a")
		for _, n := range res.Swarm.Nodes {
			if n.Transfer == nil || n.Transfer.LayerBytes < 100<<20 {
				t.Errorf("first promote on the base: node %s was sent %+v, want the base's 100 MB", f.nameOf[n.ID], n.Transfer)
			}
		}
		res = promote("b")
		for _, n := range res.Swarm.Nodes {
			tr := n.Transfer
			if tr == nil || tr.LayersSent != 1 || tr.LayersSkipped < 2 || tr.SkippedBytes < 100<<20 || tr.Bytes > 2<<20 {
				t.Errorf("node %s was sent %+v, want one layer, at most 2 MB, the base's left out", f.nameOf[n.ID], tr)
				continue
			}
			t.Logf("FIGURE changed top layer on a 100 MB base: %s sent %d bytes, %d layer(s) of %d bytes left out",
				f.nameOf[n.ID], tr.Bytes, tr.LayersSkipped, tr.SkippedBytes)
		}
		if !strings.Contains(f.out.String(), "1 new layer(s)") || !strings.Contains(f.out.String(), "already there") {
			t.Errorf("the output does not say what was sent and left out:\n%s", f.out.String())
		}
		f.runsImage(ctx, t, "quality-fabric", id)
		f.checksGreen(ctx, t)
	})

	t.Run("down -env takes the stack and the proxy off every node", func(t *testing.T) {
		if err := release.Down(ctx, f.cat, f.opts("mn"), false); err != nil {
			t.Fatalf("down: %v\n%s", err, f.out.String())
		}
		label := client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)
		if svcs, err := f.mgr.ServiceList(ctx, client.ServiceListOptions{Filters: label}); err != nil || len(svcs.Items) != 0 {
			t.Errorf("services left after down: %v %v", svcs.Items, err)
		}
		// The workers stop their tasks once the manager removed them.
		for _, id := range f.ids {
			for {
				cs, err := f.byNode[id].ContainerList(ctx, client.ContainerListOptions{All: true, Filters: label})
				if err == nil && len(cs.Items) == 0 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("%s still runs the stack's containers after down: %v %v", f.nameOf[id], cs.Items, err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		if cs, err := f.mgr.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: client.Filters{}.Add("label", labels.Proxy+"="+f.project)}); err != nil || len(cs.Items) != 0 {
			t.Errorf("the proxy is left after down: %v %v", cs.Items, err)
		}
	})
}

// buildOn builds an image of repo FROM from with one more file, name with
// content (repo's latest tag names it too).
func (f *mnFixture) buildOn(ctx context.Context, t *testing.T, repo, from, name, content string) engine.BuildResult {
	t.Helper()
	dir := t.TempDir()
	for file, body := range map[string]string{"Dockerfile": "FROM " + from + "\nCOPY " + name + " /" + name + "\n", name: content} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.local.Build(ctx, []engine.BuildSpec{{Service: path.Base(repo), Context: dir, Repo: repo}}, engine.BuildOptions{StateDir: f.state})
	if err != nil {
		t.Fatalf("build on %s: %v", from, err)
	}
	return res[0]
}

func mnSetup(t *testing.T, sw *testenv.Swarm) *mnFixture {
	f := &mnFixture{sw: sw, project: testenv.ProjectName(t, "mn"), byNode: map[string]*client.Client{}, nameOf: map[string]string{}}
	tmp := t.TempDir()
	f.deploy, f.state = filepath.Join(tmp, "deployment"), filepath.Join(tmp, "state")
	ex := filepath.Join(testenv.RepoRoot(), "examples", "maestro-platform")
	p := testenv.FreePorts(t, 2)
	m, w := sw.Manager(), sw.Workers()
	src := fmt.Sprintf(mnCatalog, f.project, f.deploy, m.Host, w[0].Host, w[1].Host, m.Dir, sw.KnownHosts, sw.Identity, ex, p[0], p[1])
	file := filepath.Join(tmp, "services.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.cat, err = catalog.Load(file); err != nil {
		t.Fatalf("test catalog: %v", err)
	}
	if f.local, err = engine.Connect(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.removeLocalImages)
	for i, r := range sw.Nodes {
		c, err := client.New(client.WithHost(r.Socket))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		id := sw.NodeID(t, i)
		f.byNode[id] = c
		f.ids = append(f.ids, id)
		f.nameOf[id] = fmt.Sprintf("worker%d", i)
		if i == 0 {
			f.mgr, f.nameOf[id] = c, "manager"
		}
	}
	f.clock = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	return f
}

func (f *mnFixture) nodeIDOf(t *testing.T, r *testenv.Remote) string {
	t.Helper()
	i := slices.Index(f.sw.Nodes, r)
	if i < 0 {
		t.Fatalf("%s is not a node of the swarm", r.Addr)
	}
	return f.ids[i]
}

func (f *mnFixture) opts(env string) release.Options {
	f.clock = f.clock.Add(time.Minute)
	now := f.clock
	f.out.Reset()
	return release.Options{Env: env, Printer: ui.Plain(&f.out), LocalDeployDir: f.deploy, Now: func() time.Time { return now }}
}

// build builds every image; variant, when set, labels quality-fabric's
// so that it is a new image.
func (f *mnFixture) build(ctx context.Context, t *testing.T, variant string) map[string]string {
	t.Helper()
	var specs []engine.BuildSpec
	for _, s := range f.cat.All() {
		var l map[string]string
		if variant != "" && s.Name == "quality-fabric" {
			l = map[string]string{"test.variant": variant}
		}
		specs = append(specs, engine.BuildSpec{Service: s.Name, Context: s.Source, Dockerfile: s.Dockerfile,
			Repo: f.cat.ImageRepo(s), Prebuild: s.Prebuild, PrebuildEnv: s.PrebuildEnv,
			PrebuildInputs: s.PrebuildInputs, PrebuildOutputs: s.PrebuildOutputs, Labels: l})
	}
	res, err := f.local.Build(ctx, specs, engine.BuildOptions{Parallel: 2, StateDir: f.state})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	ids := map[string]string{}
	for _, r := range res {
		ids[r.Service] = r.ImageID
	}
	return ids
}

// passTestAll records a passing testAll of the images now on :latest.
func (f *mnFixture) passTestAll(ctx context.Context, t *testing.T) {
	t.Helper()
	key, err := record.Key(f.deploy)
	if err != nil {
		t.Fatal(err)
	}
	rec := record.Test{Env: "dev", Project: f.project, Images: map[string]string{},
		Config: record.Views(f.cat, key), Passed: true, At: time.Now()}
	for _, s := range f.cat.All() {
		if rec.Images[s.Name], err = f.local.ImageID(ctx, f.cat.ImageRef(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := record.WriteTest(f.deploy, rec); err != nil {
		t.Fatal(err)
	}
}

func (f *mnFixture) removeLocalImages() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if list, err := f.local.API.ImageList(ctx, client.ImageListOptions{All: true}); err == nil {
		for _, img := range list.Items {
			for _, tag := range img.RepoTags {
				if strings.HasPrefix(tag, f.project+"/") {
					_, _ = f.local.API.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
				}
			}
		}
	}
	f.local.Close()
}

// unchanged fails unless no node has an image of the project, the stack
// has no service and the manager no release.
func (f *mnFixture) unchanged(ctx context.Context, t *testing.T) {
	t.Helper()
	for id, c := range f.byNode {
		imgs, err := c.ImageList(ctx, client.ImageListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs.Items {
			for _, tag := range img.RepoTags {
				if strings.HasPrefix(tag, f.project+"/") {
					t.Errorf("%s has %s after a refused promote", f.nameOf[id], tag)
				}
			}
		}
	}
	svcs, err := f.mgr.ServiceList(ctx, client.ServiceListOptions{})
	if err != nil || len(svcs.Items) != 0 {
		t.Errorf("services after a refused promote: %v %v", svcs.Items, err)
	}
	if _, err := os.Stat(filepath.Join(f.sw.Manager().Dir, "releases")); !os.IsNotExist(err) {
		t.Errorf("a refused promote left releases/ on the manager (%v)", err)
	}
}

// tasks returns, per service, the running tasks swarm wants running.
func (f *mnFixture) tasks(ctx context.Context) (map[string][]swarm.Task, error) {
	svcs, err := f.mgr.ServiceList(ctx, client.ServiceListOptions{
		Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)})
	if err != nil {
		return nil, err
	}
	out := map[string][]swarm.Task{}
	for _, s := range svcs.Items {
		ts, err := f.mgr.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.
			Add("service", s.ID).Add("desired-state", "running")})
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(s.Spec.Name, f.project+"_")
		for _, tk := range ts.Items {
			if tk.Status.State == swarm.TaskStateRunning {
				out[name] = append(out[name], tk)
			}
		}
	}
	return out, nil
}

// problems says what keeps the stack from mnReplicas healthy tasks per
// service on distinct nodes, none on node avoid ("" when nothing does).
// Each task's container health is asked of the engine of its node.
func (f *mnFixture) problems(ctx context.Context, avoid string) (map[string][]string, []string) {
	ts, err := f.tasks(ctx)
	if err != nil {
		return nil, []string{err.Error()}
	}
	on := map[string][]string{}
	var probs []string
	for _, svc := range mnServices {
		nodes := map[string]bool{}
		for _, tk := range ts[svc] {
			name := f.nameOf[tk.NodeID]
			on[svc] = append(on[svc], name)
			nodes[tk.NodeID] = true
			if tk.NodeID == avoid {
				probs = append(probs, fmt.Sprintf("%s runs on %s", svc, name))
				continue
			}
			c := f.byNode[tk.NodeID]
			if c == nil || tk.Status.ContainerStatus == nil {
				probs = append(probs, fmt.Sprintf("%s task %s on %s: no container", svc, tk.ID, name))
				continue
			}
			in, err := c.ContainerInspect(ctx, tk.Status.ContainerStatus.ContainerID, client.ContainerInspectOptions{})
			if err != nil || in.Container.State.Health == nil || in.Container.State.Health.Status != "healthy" {
				probs = append(probs, fmt.Sprintf("%s task on %s not healthy (%v)", svc, name, err))
			}
		}
		if len(ts[svc]) != mnReplicas || len(nodes) != mnReplicas {
			probs = append(probs, fmt.Sprintf("%s runs %d tasks on %d nodes, want %d on %d", svc, len(ts[svc]), len(nodes), mnReplicas, mnReplicas))
		}
		slices.Sort(on[svc])
	}
	return on, probs
}

// spread fails unless every service runs mnReplicas healthy tasks on as
// many nodes (none on avoid), and returns where they run.
func (f *mnFixture) spread(ctx context.Context, t *testing.T, avoid string) map[string][]string {
	t.Helper()
	on, probs := f.problems(ctx, avoid)
	for _, p := range probs {
		t.Error(p)
	}
	return on
}

// mnSafetyBound ends a wait for swarm to converge that would otherwise last
// for ever: far beyond what swarm's own timers take, even on a busy
// machine, so that reaching it means the change never converged.
const mnSafetyBound = 10 * time.Minute

// waitConverged waits until every service runs mnReplicas healthy tasks
// on distinct nodes other than gone, and returns the time since t0.
func (f *mnFixture) waitConverged(ctx context.Context, t *testing.T, gone string, t0 time.Time, limit time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		_, probs := f.problems(ctx, gone)
		if len(probs) == 0 {
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged %s after the change: %v", time.Since(t0).Round(time.Second), probs)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitDown returns when the manager lists the node as down, as the time
// since t0 (0 when it did not within limit).
func (f *mnFixture) waitDown(ctx context.Context, id string, t0 time.Time, limit time.Duration) time.Duration {
	for time.Since(t0) < limit {
		n, err := f.mgr.NodeInspect(ctx, id, client.NodeInspectOptions{})
		if err == nil && n.Node.Status.State == swarm.NodeStateDown {
			return time.Since(t0)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0
}

func (f *mnFixture) taskIDs(ctx context.Context, t *testing.T) []string {
	t.Helper()
	ts, err := f.tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range ts {
		for _, tk := range l {
			ids = append(ids, tk.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// busiestWorker is the worker running the most of the stack's tasks.
func (f *mnFixture) busiestWorker(ctx context.Context, t *testing.T) string {
	t.Helper()
	ts, err := f.tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, l := range ts {
		for _, tk := range l {
			if f.nameOf[tk.NodeID] != "manager" {
				count[tk.NodeID]++
			}
		}
	}
	best := ""
	for id, n := range count {
		if best == "" || n > count[best] || n == count[best] && id < best {
			best = id
		}
	}
	if best == "" {
		t.Fatal("no worker runs a task")
	}
	return best
}

func (f *mnFixture) availability(ctx context.Context, t *testing.T, id string, a swarm.NodeAvailability) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "-H", f.sw.Manager().Socket, "node", "update", "--availability", string(a), id).CombinedOutput()
	if err != nil {
		t.Fatalf("node update %s: %v: %s", a, err, out)
	}
}

// runsImage fails unless every task of svc runs image id.
func (f *mnFixture) runsImage(ctx context.Context, t *testing.T, svc, id string) {
	t.Helper()
	ts, err := f.tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts[svc] {
		c := f.byNode[tk.NodeID]
		in, err := c.ContainerInspect(ctx, tk.Status.ContainerStatus.ContainerID, client.ContainerInspectOptions{})
		if err != nil || in.Container.Image != id {
			t.Errorf("%s on %s runs %v (%v), want %s", svc, f.nameOf[tk.NodeID], in.Container.Image, err, id)
		}
	}
}

// checksGreen runs testAll's checks against the swarm, as promote does.
func (f *mnFixture) checksGreen(ctx context.Context, t *testing.T) {
	t.Helper()
	var out bytes.Buffer
	rep, err := check.Run(ctx, f.cat, check.Target{Env: f.cat.Environments["mn"], Project: f.project,
		HostAddr: f.sw.Manager().Addr, API: f.mgr, ReuseProbe: true,
		Health: &health.Swarm{Engine: &engine.Engine{API: f.mgr, Host: f.mgr.DaemonHost()}, Stack: f.project}},
		check.Options{Printer: ui.Plain(&out)})
	if err != nil || rep.Failed != 0 || rep.Passed == 0 {
		t.Errorf("checks: %v\n%s", err, out.String())
	}
}

// load runs fn under a bounded load on the published ports, through the
// proxy on the manager's address.
func (f *mnFixture) load(t *testing.T, fn func()) testenv.LoadStats {
	t.Helper()
	m := f.sw.Manager().Addr
	return testenv.DuringAll(t, []testenv.LoadSpec{{Targets: []string{
		fmt.Sprintf("http://%s:8005/health", m), fmt.Sprintf("http://%s:8000/health", m)},
		Hosts: f.sw.Addrs(), Rate: 25}, {Targets: []string{
		fmt.Sprintf("http://%s:8005/log", m), fmt.Sprintf("http://%s:8000/log", m)},
		Hosts: f.sw.Addrs(), Rate: 10, Method: http.MethodPost, Body: "load"}}, fn)
}

// mnTornDown fails unless nothing of the swarm is left: no namespace,
// link or iptables rule of it, no folder.
func mnTornDown(t *testing.T, sw *testenv.Swarm) {
	if sw == nil {
		return
	}
	names := []string{sw.Bridge}
	dirs := []string{sw.Root}
	for _, n := range sw.Nodes {
		names = append(names, n.Namespace)
		dirs = append(dirs, n.Root)
	}
	for _, c := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link", "show"}, {"iptables", "-S"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			t.Errorf("%s: %v", strings.Join(c, " "), err)
		}
		for _, n := range names {
			if strings.Contains(string(out), n) {
				t.Errorf("after teardown, %s still shows %s:\n%s", strings.Join(c, " "), n, out)
			}
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("after teardown, %s is left (%v)", d, err)
		}
	}
	t.Logf("torn down: no namespace, link or iptables rule named %v, no folder %v", names, dirs)
}
