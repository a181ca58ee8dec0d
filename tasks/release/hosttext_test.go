package release_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/release"
)

// What a host holds is not trusted: on a second host, a tampered audit log
// (escape sequences in every field) prints cleaned; a 2 MB one still
// reads, its newest records; and an environment whose project runs there
// for another environment is refused before anything changes.
func TestHostIsNotTrusted(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	audit := filepath.Join(f.r.Dir, "audit.log")
	if err := os.MkdirAll(f.r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("a tampered audit log prints cleaned", func(t *testing.T) {
		rec := map[string]any{"time": "2026-11-27T18:15:00Z", "env": "e2e", "action": "promote\x1b]0;pwned\x07",
			"user": "mallory\x1b[2J@box", "git_author": "M <m@x>\x1b[1A", "commit": "\x1b[31mdeadbeefcafe", "release": "20261127T181500Z\x1b[8m",
			"previous": "20261127T171500Z\u009b2J", "outcome": "live\x1b]8;;http://evil\x07", "duration_ms": 1500}
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(audit, append(b, '\n'), 0o640); err != nil {
			t.Fatal(err)
		}
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), false)
		if err != nil || len(recs) != 1 {
			t.Fatalf("history: %d records, %v\n%s", len(recs), err, f.out.String())
		}
		out := f.out.String()
		t.Logf("history:\n%s", out)
		if strings.ContainsAny(out, "\x1b\x07\u009b") || strings.Contains(out, "pwned") || strings.Contains(out, "evil") {
			t.Errorf("the table carries the log's escape sequences: %q", out)
		}
		for _, want := range []string{"mallory@box", "deadbee", "20261127T181500Z", "20261127T171500Z", "promote"} {
			if !strings.Contains(out, want) {
				t.Errorf("the table lacks %q: %q", want, out)
			}
		}
	})

	t.Run("a 2 MB audit log reads: its newest records", func(t *testing.T) {
		fh, err := os.OpenFile(audit, os.O_WRONLY|os.O_TRUNC, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		pad := strings.Repeat("x", 400)
		n := 0
		for size := 0; size < 2<<20; n++ {
			b, _ := json.Marshal(map[string]any{"time": "2026-11-27T18:15:00Z", "env": "e2e", "action": "promote", "user": fmt.Sprintf("u%d", n),
				"git_author": pad, "outcome": "live"})
			k, err := fh.Write(append(b, '\n'))
			if err != nil {
				t.Fatal(err)
			}
			size += k
		}
		last := fmt.Sprintf("u%d", n-1)
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), true)
		if err != nil {
			t.Fatalf("history of a 2 MB log: %v", err)
		}
		if len(recs) == 0 || len(recs) >= n || recs[len(recs)-1].User != last || recs[0].User == "u0" {
			t.Fatalf("history of %d records: %d, newest %+v; want the newest that fit, %s last", n, len(recs), recs[len(recs)-1].User, last)
		}
		if len(f.out.String()) > 1<<20 {
			t.Errorf("history printed %d bytes", len(f.out.String()))
		}
	})

	t.Run("another environment of the project on the same engine is refused", func(t *testing.T) {
		// What environment sw's stack leaves on the host: a container of
		// the project, labelled with its environment. Any image will do.
		imgs, err := f.remote.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("label", labels.Tool)})
		if err != nil || len(imgs.Items) == 0 {
			t.Fatalf("the release tool's image on the host: %v", err)
		}
		created, err := f.remote.ContainerCreate(ctx, client.ContainerCreateOptions{Name: f.project + "-neighbour",
			Config: &container.Config{Image: imgs.Items[0].ID, Cmd: []string{"serve"},
				Labels: map[string]string{labels.ComposeProject: f.project, labels.ComposeService: "template-service", labels.Environment: "sw"}}})
		if err != nil {
			t.Fatal(err)
		}
		removed := false
		remove := func() {
			if _, err := f.remote.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Error(err)
			}
			removed = true
		}
		t.Cleanup(func() {
			if !removed {
				remove()
			}
		})
		before, _ := os.ReadFile(audit)
		err = release.Rollback(ctx, f.cat, f.opts("e2e"))
		want := fmt.Sprintf("%s:%d: environments.e2e.host: ", f.cat.File, f.cat.Environments["e2e"].Line)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "for environment sw") ||
			!strings.Contains(err.Error(), "give e2e a host of its own") {
			t.Fatalf("rollback of e2e where sw runs: %v, want a refusal starting %q", err, want)
		}
		if after, _ := os.ReadFile(audit); string(after) != string(before) {
			t.Error("the refused rollback wrote to the audit log")
		}
		if _, err := f.remote.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{}); err != nil {
			t.Errorf("the other environment's container: %v", err)
		}
		// Control: gone, the rollback goes on (to fail for want of a
		// release, which is another matter).
		remove()
		if err := release.Rollback(ctx, f.cat, f.opts("e2e")); err == nil || strings.Contains(err.Error(), "already runs project") {
			t.Fatalf("rollback of e2e once alone: %v", err)
		}
	})
}
