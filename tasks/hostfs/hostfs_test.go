package hostfs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/labels"
)

// cleanup removes, when the test ends, the folder and every agent of it
// (of any tool version).
func cleanup(t *testing.T, e *engine.Engine, dir string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := e.API.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: client.Filters{}.Add("label", labels.ToolDir+"="+dir)})
		if err == nil {
			for _, c := range list.Items {
				_, _ = e.API.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
		_ = os.RemoveAll(dir)
	})
}

func open(t *testing.T, ctx context.Context, e *engine.Engine, dir, env string) *hostfs.FS {
	t.Helper()
	f, err := hostfs.Open(ctx, e, dir, "hostfstest", env)
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	return f
}

// The agent does the release folder's work on the engine's host: upload,
// activate, list, fetch, prune; it is locked down; and it refuses a second
// environment in the same folder, ids that are no ids, and files over its
// bounds.
func TestAgent(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// A folder named for the run: a killed run's folder is swept.
	dir := filepath.Join("/tmp", testenv.ProjectName(t, "hostfs"))
	cleanup(t, e, dir)
	f := open(t, ctx, e, dir, "demo")

	in, err := e.API.ContainerInspect(ctx, f.Agent(), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := in.Container.HostConfig
	if !hc.ReadonlyRootfs || !slices.Equal(hc.CapDrop, []string{"ALL"}) || hc.NetworkMode != "none" ||
		!slices.Contains(hc.SecurityOpt, "no-new-privileges") || len(hc.Binds) != 1 || hc.Binds[0] != dir+":/deploy" {
		t.Errorf("the agent is not locked down: %+v", hc)
	}
	for _, c := range hc.CapAdd {
		if !slices.Contains([]string{"CHOWN", "DAC_OVERRIDE", "FOWNER"}, strings.TrimPrefix(c, "CAP_")) {
			t.Errorf("the agent has capability %s", c)
		}
	}

	files := map[string]hostfs.File{
		"docker-compose.yml": {Data: []byte("services: {}\n"), Mode: 0o644},
		".env":               {Data: []byte("X=1\n"), Mode: 0o600},
		"svc/.env":           {Data: []byte("Y=2\n"), Mode: 0o600},
	}
	ids := []string{"20261129T100000Z-abcd", "20261129T110000Z-abcd", "20261129T120000Z"}
	for _, id := range ids {
		if _, err := f.Upload(ctx, id, files); err != nil {
			t.Fatalf("upload %s: %v", id, err)
		}
	}
	st, err := f.Activate(ctx, ids[1])
	if err != nil || st.Current != ids[1] || !slices.Equal(st.Releases, ids) {
		t.Fatalf("activate: %+v %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "releases", ids[1], "svc", ".env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("uploaded .env: %v %v, want mode 0600", fi, err)
	}
	got, err := f.Fetch(ctx, ids[1])
	if err != nil || len(got) != 3 || string(got["svc/.env"].Data) != "Y=2\n" {
		t.Fatalf("fetch: %v %v", got, err)
	}
	// ids[2] never went live (a promote killed after its upload); ids[0],
	// older than the first release marked, counts as live.
	if !slices.Equal(st.Live, ids[:2]) || st.WentLive(ids[2]) || !st.WentLive(ids[0]) {
		t.Fatalf("live: %+v", st)
	}
	// Keep 1 live one (current), plus a protected one: only the release
	// that never went live goes; without the protection, ids[0] goes too.
	if st, err = f.Prune(ctx, 1, ids[0]); err != nil || !slices.Equal(st.Removed, ids[2:]) {
		t.Fatalf("prune with ids[0] protected: %+v %v", st, err)
	}
	if st, err = f.Prune(ctx, 1); err != nil || !slices.Equal(st.Removed, ids[:1]) {
		t.Fatalf("prune: %+v %v, want %s removed", st, err, ids[0])
	}

	t.Run("another environment in the same folder is refused", func(t *testing.T) {
		_, err := hostfs.Open(ctx, e, dir, "hostfstest", "staging")
		if err == nil || !strings.Contains(err.Error(), "belongs to environment hostfstest/demo") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a current link that names no release is refused", func(t *testing.T) {
		link := filepath.Join(dir, "current")
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../etc", link); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = os.Remove(link)
			_ = os.Symlink(filepath.Join("releases", ids[1]), link)
		}()
		if _, err := f.List(ctx); err == nil || !strings.Contains(err.Error(), "not a release id") {
			t.Fatalf("list with current -> ../../etc: %v", err)
		}
	})
	t.Run("an id that is no release id never reaches the host", func(t *testing.T) {
		for _, bad := range []string{"../../etc", "20261129T100000Z/../x", ""} {
			if _, err := f.Fetch(ctx, bad); err == nil {
				t.Errorf("fetch %q succeeded", bad)
			}
			if _, err := f.Upload(ctx, bad, files); err == nil {
				t.Errorf("upload %q succeeded", bad)
			}
		}
		if _, err := f.Upload(ctx, "20261129T130000Z", map[string]hostfs.File{"../escape": {Data: []byte("x")}}); err == nil {
			t.Error("a file name leaving the release folder was uploaded")
		}
	})
	t.Run("a release grown too large on the host is not read", func(t *testing.T) {
		big := filepath.Join(dir, "releases", ids[1], "huge.bin")
		fh, err := os.Create(big)
		if err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(5 << 20); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		if _, err := f.Fetch(ctx, ids[1]); !errors.Is(err, hostfs.ErrTooLarge) {
			t.Fatalf("fetch of a release holding a 5 MB file: %v", err)
		}
	})
	t.Run("the agent is reused, and replaced when gone", func(t *testing.T) {
		again := open(t, ctx, e, dir, "demo")
		if _, err := again.List(ctx); err != nil {
			t.Fatal(err)
		}
		if again.Agent() != in.Container.ID {
			t.Errorf("a second Open made another agent: %s, then %s", in.Container.ID, again.Agent())
		}
		if _, err := e.API.ContainerRemove(ctx, in.Container.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		third := open(t, ctx, e, dir, "demo")
		if st, err := third.List(ctx); err != nil || st.Current != ids[1] {
			t.Fatalf("after the agent was removed: %+v %v", st, err)
		}
	})
}

// One holder at a time: a second one is told who holds the lock; a
// holder whose connection ends without a release loses the lock, and the
// next one takes it over and is told from whom.
func TestLock(t *testing.T) {
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dir := filepath.Join("/tmp", testenv.ProjectName(t, "lock"))
	cleanup(t, e, dir)
	f := open(t, ctx, e, dir, "demo")
	a := hostfs.Holder{User: "ana@laptop", PID: 11, Command: "promote", Since: time.Now().UTC()}
	l, err := f.Lock(ctx, a)
	if err != nil || l.TookOver != nil {
		t.Fatalf("first lock: %v (took over %v)", err, l)
	}
	_, err = f.Lock(ctx, hostfs.Holder{User: "bo@desk", PID: 22, Command: "rollback", Since: time.Now().UTC()})
	var busy *hostfs.BusyError
	if !errors.As(err, &busy) || busy.Holder.User != "ana@laptop" || busy.Holder.PID != 11 ||
		!strings.Contains(err.Error(), "locked by ana@laptop (promote, pid 11)") || !strings.Contains(err.Error(), "-wait") {
		t.Fatalf("second lock: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := f.Lock(ctx, hostfs.Holder{User: "bo@desk", PID: 22, Command: "rollback", Since: time.Now().UTC()})
	if err != nil || l2.TookOver != nil {
		t.Fatalf("lock after a release: %v, took over %v", err, l2)
	}
	// The holder dies: its connection ends with no release.
	l2.Abandon()
	var l3 *hostfs.Lock
	for i := 0; ; i++ {
		l3, err = f.Lock(ctx, hostfs.Holder{User: "cy@ci", PID: 33, Command: "promote", Since: time.Now().UTC()})
		if err == nil || !errors.As(err, &busy) || i == 100 {
			break
		}
		time.Sleep(50 * time.Millisecond) // the host tool notices the end of its input
	}
	if err != nil || l3.TookOver == nil || l3.TookOver.User != "bo@desk" {
		t.Fatalf("lock after its holder died: %v, took over %+v", err, l3)
	}
	l3.Release()
}

// Two versions of the release tool on one host (a teammate on another
// commit): each has its own agent, and they share the lock. While the old
// version holds it, the new one connecting (as `mage releases` does)
// leaves the old agent and its lock alone, and its promotion is refused;
// once the lock is free, the new version's holder retires the old agent.
// On a second host, reached through its own engine.
func TestLockAcrossToolVersions(t *testing.T) {
	testenv.RequireCommand(t, "go")
	r := testenv.StartRemote(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	e, err := engine.Connect(ctx, r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dir := r.Dir
	cleanup(t, e, dir)
	old, err := hostfs.OpenVersion(ctx, e, dir, "hostfstest", "demo", "old")
	if err != nil {
		t.Fatal(err)
	}
	held, err := old.Lock(ctx, hostfs.Holder{User: "ana@laptop", PID: 11, Command: "promote", Since: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	// The other version connects and reads, as releases and history do.
	cur := open(t, ctx, e, dir, "demo")
	if cur.Agent() == old.Agent() {
		t.Fatalf("both versions share agent %s: the builds are not two versions", cur.Agent())
	}
	if _, err := cur.List(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := e.API.ContainerInspect(ctx, old.Agent(), client.ContainerInspectOptions{})
	if err != nil || in.Container.State == nil || !in.Container.State.Running {
		t.Fatalf("the old version's agent, which holds the lock, is gone or stopped after the new one connected: %v", err)
	}
	// Its promotion is refused: the lock is still held, by the old one.
	_, err = cur.Lock(ctx, hostfs.Holder{User: "bo@desk", PID: 22, Command: "promote", Since: time.Now().UTC()})
	var busy *hostfs.BusyError
	if !errors.As(err, &busy) || busy.Holder.User != "ana@laptop" {
		t.Fatalf("a second promotion while the other version holds the lock: %v", err)
	}
	// The old holder still works through its agent, and releases.
	if _, err := old.List(ctx); err != nil {
		t.Fatalf("the old version's next host step failed: %v", err)
	}
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	// Free now: the new version takes it and retires the old agent.
	l, err := cur.Lock(ctx, hostfs.Holder{User: "bo@desk", PID: 22, Command: "promote", Since: time.Now().UTC()})
	if err != nil {
		t.Fatalf("lock once free: %v", err)
	}
	defer l.Release()
	if _, err := e.API.ContainerInspect(ctx, old.Agent(), client.ContainerInspectOptions{}); !engine.IsNotFound(err) {
		t.Errorf("the old version's agent is still there once the new one holds the lock: %v", err)
	}
	if _, err := cur.List(ctx); err != nil {
		t.Fatalf("the holder's agent after the retirement: %v", err)
	}
}
