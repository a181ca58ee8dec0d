package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

func TestStackArgs(t *testing.T) {
	want := []string{"docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", "docker-stack.yml", "p"}
	if got := StackDeployArgs("p", "docker-stack.yml"); !reflect.DeepEqual(got, want) {
		t.Fatalf("%q", got)
	}
	if got := StackRemoveArgs("p"); !reflect.DeepEqual(got, []string{"docker", "stack", "rm", "p"}) {
		t.Fatalf("%q", got)
	}
}

// The plan of a compose stack: what runs the release's image and
// configuration, healthy, stays; what differs is replaced, with the
// reason; what is broken is healed; what is missing starts; what the
// release no longer has goes.
func TestPlan(t *testing.T) {
	ct := func(id, hash, image, state, health string) engine.Container {
		return engine.Container{ID: id, State: state, Health: health, ImageID: image,
			Labels: map[string]string{labels.ConfigHash: hash}}
	}
	rel := &Release{Services: []Service{
		{Name: "same", ConfigHash: "h1", ImageID: "sha256:a"},
		{Name: "newimage", ConfigHash: "h2", ImageID: "sha256:b2"},
		{Name: "newconfig", ConfigHash: "h3new", ImageID: "sha256:c"},
		{Name: "crashed", ConfigHash: "h4", ImageID: "sha256:d"},
		{Name: "missing", ConfigHash: "h5"},
		{Name: "twice", ConfigHash: "h6", ImageID: "sha256:f"},
	}}
	run := map[string][]engine.Container{
		"same":      {ct("1", "h1", "sha256:a", "running", "healthy")},
		"newimage":  {ct("2", "h2", "sha256:b1", "running", "healthy")},
		"newconfig": {ct("3", "h3", "sha256:c", "running", "")},
		"crashed":   {ct("4", "h4", "sha256:d", "exited", "")},
		"gone":      {ct("5", "h", "sha256:e", "running", "")},
		"twice":     {ct("6a", "h6", "sha256:f", "running", "healthy"), ct("6b", "old", "sha256:f", "running", "healthy")},
	}
	p := plan(rel, run)
	got := map[string]Change{}
	for _, c := range p.Changes {
		got[c.Service] = c
	}
	for name, want := range map[string]struct {
		a   Action
		why string
	}{
		"same": {Keep, ""}, "newimage": {Replace, "image b1 -> b2"}, "newconfig": {Replace, "configuration changed"},
		"crashed": {Heal, "exited (exit code 0)"}, "missing": {Start, ""}, "gone": {Drop, "no longer in the catalog"},
		"twice": {Keep, ""},
	} {
		if c := got[name]; c.Action != want.a || c.Why != want.why {
			t.Errorf("%s: %s (%s), want %s (%s)", name, c.Action, c.Why, want.a, want.why)
		}
	}
	if c := got["twice"]; !reflect.DeepEqual(c.New, []string{"6a"}) || len(c.Old) != 2 {
		t.Errorf("twice: old %v new %v, want the fitting 6a kept and both listed as old", c.Old, c.New)
	}
	if s := p.Summary(); s != "1 started (missing), 2 replaced (newimage, newconfig), 1 healed (crashed), 1 removed (gone), 2 unchanged" {
		t.Errorf("summary %q", s)
	}
}

// A CLI's output is shown line by line as it comes, dimmed and indented,
// without escape sequences, blank lines or secrets, a secret split across
// two writes included; the tail a failed CLI's error carries is cleaned
// and redacted too.
func TestOutputCleansAndRedacts(t *testing.T) {
	var out bytes.Buffer
	rel := &Release{Printer: ui.Plain(&out), Redact: func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }}
	w := rel.output()
	w.Write([]byte("Creating web ... \x1b[31mdone\x1b[0m\r\n\n   \npassword hun"))
	if got := out.String(); got != "    Creating web ... done\n" {
		t.Errorf("after the first write: %q", got)
	}
	w.Write([]byte("ter2 leaked\n\x1b]0;title\x07last"))
	w.Close()
	if want := "    Creating web ... done\n    password *** leaked\n    last\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	err := fmt.Errorf("compose up: %w", rel.redactError(&compose.RunError{Argv: []string{"docker-compose", "up"},
		Err: errors.New("exit status 1"), Tail: "error: hunter2 refused\x1b[2J"}))
	if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "\x1b") || !strings.Contains(msg, "error: *** refused") {
		t.Errorf("error: %q", msg)
	}
}

// drainTraffic is a proxy whose Drain answers with open and err, and
// records what it was asked.
type drainTraffic struct {
	Traffic
	open   string
	err    error
	asked  []string
	within time.Duration
}

func (d *drainTraffic) Drain(_ context.Context, ids []string, timeout time.Duration) (string, error) {
	d.asked, d.within = ids, timeout
	return d.open, d.err
}

// Only containers behind the proxy are drained, within the environment's
// drain_timeout; requests still open then, or a drain that fails, are said
// and the swap goes on; an interrupt stops it.
func TestDrainBeforeStop(t *testing.T) {
	env := &catalog.Environment{Name: "demo", DrainTimeout: 7 * time.Second}
	for name, tc := range map[string]struct {
		open, want string
		err        error
		cancel     bool
		fails      bool
	}{
		"idle":        {},
		"still open":  {open: "1 connection(s) still open", want: "requests still in flight to aaaaaaaaaaaa after drain_timeout 7s (1 connection(s) still open): stopping them gracefully now"},
		"drain fails": {err: errors.New("exec refused"), want: "could not be taken out of the proxy's rotation first (exec refused): stopping them gracefully now"},
		"interrupted": {err: context.Canceled, cancel: true, fails: true},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			fake := &drainTraffic{open: tc.open, err: tc.err}
			c := &Compose{Proxy: fake}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			err := c.drain(ctx, &Release{Env: env, Printer: ui.Plain(&out)}, []string{"aaaaaaaaaaaa11", "bbbbbbbbbbbb22"},
				map[string]bool{"aaaaaaaaaaaa11": true})
			if (err != nil) != tc.fails {
				t.Fatalf("drain: %v, want failure %v", err, tc.fails)
			}
			if !reflect.DeepEqual(fake.asked, []string{"aaaaaaaaaaaa11"}) || fake.within != 7*time.Second {
				t.Errorf("drained %v within %s, want only the attached container within drain_timeout 7s", fake.asked, fake.within)
			}
			if tc.want == "" && out.Len() != 0 || !strings.Contains(out.String(), tc.want) {
				t.Errorf("printed %q, want %q", out.String(), tc.want)
			}
		})
	}
	fake := &drainTraffic{}
	if err := (&Compose{Proxy: fake}).drain(context.Background(), &Release{Env: env}, []string{"c1"}, map[string]bool{}); err != nil || fake.asked != nil {
		t.Errorf("nothing behind the proxy: drain %v, asked %v; want nothing asked", err, fake.asked)
	}
}
