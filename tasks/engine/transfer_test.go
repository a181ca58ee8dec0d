package engine

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
	"github.com/moby/moby/client"
)

// secondEngine is a second Docker host's engine (testenv.StartRemote:
// its own dockerd in a network namespace of its own, so that nothing of
// this machine's docker0 or iptables is touched), reached on its local
// socket, and closed when the test ends.
func secondEngine(t *testing.T) *Engine {
	t.Helper()
	r := testenv.StartRemote(t)
	e, err := Connect(context.Background(), r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestTransfer(t *testing.T) {
	src := connect(t)
	dst := secondEngine(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, src, "xfer")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\nCOPY f.txt /f.txt\n", "f.txt": "payload"})
	res, err := src.Build(ctx, []BuildSpec{{Service: "x", Context: dir, Repo: repo, Labels: fresh(repo, nil)}}, BuildOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ref, id := res[0].Ref, res[0].ImageID

	var out bytes.Buffer
	rep, err := Transfer(ctx, src, dst, []string{ref, repo + ":latest"}, ui.Plain(&out))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Sent, []string{ref, repo + ":latest"}) || len(rep.Present) != 0 || rep.Bytes < 512 {
		t.Fatalf("first transfer: %+v", rep)
	}
	for _, r := range []string{ref, repo + ":latest"} {
		if got, err := dst.ImageID(ctx, r); err != nil || got != id {
			t.Errorf("dst %s = %s, %v; want %s", r, got, err, id)
		}
	}
	if i, j := strings.Index(out.String(), "… images                   sending "+ref), strings.Index(out.String(), "✔ images                   sent 2 image(s)"); i < 0 || j < i {
		t.Errorf("want a sending line, then the sent line: %q", out.String())
	}

	// Already there: nothing is streamed.
	rep, err = Transfer(ctx, src, dst, []string{ref}, nil)
	if err != nil || len(rep.Sent) != 0 || !slices.Equal(rep.Present, []string{ref}) || rep.Bytes != 0 {
		t.Fatalf("second transfer: %+v, %v", rep, err)
	}

	// A new tag of an image dst has: re-tagged there, not sent.
	extra := repo + ":release-1"
	if _, err := src.API.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: extra}); err != nil {
		t.Fatal(err)
	}
	rep, err = Transfer(ctx, src, dst, []string{extra}, nil)
	if err != nil || rep.Bytes != 0 || !slices.Equal(rep.Present, []string{extra}) {
		t.Fatalf("tag transfer: %+v, %v", rep, err)
	}
	if got, _ := dst.ImageID(ctx, extra); got != id {
		t.Errorf("dst %s = %q, want %s", extra, got, id)
	}

	// A ref the source does not have.
	_, err = Transfer(ctx, src, dst, []string{repo + ":nope"}, nil)
	if err == nil || !strings.Contains(err.Error(), repo+":nope") || !strings.Contains(err.Error(), "not on the source") {
		t.Errorf("missing ref: %v", err)
	}
}

// The bytes a transfer has streamed, and the rate, show while it runs: the
// save stream here stops half-way until the test has seen the progress
// line that moving the clock on prints.
func TestTransferProgress(t *testing.T) {
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := ui.Plain(&out)
	p.SetClock(clk)
	a := p.Start("images", "sending example/a:1 to ssh://demo")
	pr, pw := io.Pipe()
	cr := &countingReader{r: pr}
	a.ProgressFunc(func(elapsed time.Duration) string { return rate(cr.n.Load(), elapsed) })
	go func() {
		pw.Write(make([]byte, 1_500_000))
		pw.Write(make([]byte, 500_000))
		pw.Close()
	}()
	buf := make([]byte, 1_500_000)
	if _, err := io.ReadFull(cr, buf); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ui.ProgressEvery)
	if want := "… images                   still sending example/a:1 to ssh://demo after 10s: 1.5 MB sent, 150.0 kB/s\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", out.String(), want)
	}
	// Stalled: the rate falls.
	clk.Advance(ui.ProgressEvery)
	if want := "after 20s: 1.5 MB sent, 75.0 kB/s\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", out.String(), want)
	}
	if n, err := io.Copy(io.Discard, cr); n != 500_000 || err != nil || cr.n.Load() != 2_000_000 {
		t.Errorf("rest: %d, %v; counted %d", n, err, cr.n.Load())
	}
	a.Done(ui.OK, "sent 1 image(s), %s", ui.Bytes(cr.n.Load()))
	if !strings.HasSuffix(out.String(), "✔ images                   sent 1 image(s), 2.0 MB\n") {
		t.Errorf("output:\n%s", out.String())
	}
}
