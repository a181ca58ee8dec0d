package engine

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
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

// One second host serves every transfer test: starting one is the
// expensive part.
func TestTransfer(t *testing.T) {
	src := connect(t)
	dst := secondEngine(t)
	t.Run("images", func(t *testing.T) { testTransferImages(t, src, dst) })
	t.Run("only missing layers", func(t *testing.T) { testTransferLayers(t, src, dst) })
}

func testTransferImages(t *testing.T, src, dst *Engine) {
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

// An image built on a base of over 100 MB the host already has sends its
// own layer and not the base's, and the first transfer, of a compressible
// layer, sends less than the layers' size. Should the host lack a layer
// the archive leaves out (pruned meanwhile), the load is tried again with
// every layer.
func testTransferLayers(t *testing.T, src, dst *Engine) {
	ctx := buildCtx(t)
	repo := uniqueRepo(t, src, "layers")
	t.Cleanup(func() { removeRepo(t, dst, repo) })
	build := func(tag, dockerfile string, files map[string]string) string {
		t.Helper()
		dir := t.TempDir()
		files["Dockerfile"] = dockerfile
		writeFiles(t, dir, files)
		if strings.Contains(dockerfile, "random.bin") {
			if err := os.WriteFile(filepath.Join(dir, "random.bin"), testenv.Incompressible(tag, 100<<20), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res, err := src.Build(ctx, []BuildSpec{{Service: tag, Context: dir, Repo: repo, Labels: fresh(repo+tag, nil)}}, BuildOptions{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		ref := repo + ":" + tag
		if _, err := src.API.ImageTag(ctx, client.ImageTagOptions{Source: res[0].ImageID, Target: ref}); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	// The base: 100 MB that do not compress, and 20 MB that do.
	base := build("base", "FROM scratch\nCOPY random.bin /random.bin\nCOPY text.txt /text.txt\n",
		map[string]string{"text.txt": strings.Repeat("the same line of text, again and again\n", 20<<20/39)})
	app := func(version string) string {
		return build(version, "FROM "+base+"\nCOPY version.txt /version.txt\n", map[string]string{"version.txt": version})
	}

	var out bytes.Buffer
	v1 := app("v1")
	rep, err := Transfer(ctx, src, dst, []string{v1}, ui.Plain(&out))
	if err != nil {
		t.Fatal(err)
	}
	if rep.LayersSent != 3 || rep.LayersSkipped != 0 || rep.LayerBytes < 120<<20 || rep.Bytes >= rep.LayerBytes {
		t.Errorf("first transfer: %+v; want 3 layers of over 120 MB, compressed to less", rep)
	}

	v2 := app("v2")
	out.Reset()
	rep, err = Transfer(ctx, src, dst, []string{v2}, ui.Plain(&out))
	if err != nil {
		t.Fatal(err)
	}
	if rep.LayersSent != 1 || rep.LayersSkipped != 2 || rep.SkippedBytes < 120<<20 || rep.Bytes > 2<<20 {
		t.Errorf("a changed top layer: %+v; want 1 layer sent, 2 skipped, at most 2 MB on the wire", rep)
	}
	if !strings.Contains(out.String(), "1 new layer(s)") || !strings.Contains(out.String(), "2 layer(s) already there, 12") {
		t.Errorf("the output does not say what was sent and skipped:\n%s", out.String())
	}
	sameLayers(ctx, t, src, dst, v2)

	// The host lost the base after the question: the archive without it
	// fails to load, and the transfer sends every layer instead.
	v3 := app("v3")
	plan, err := planLayers(ctx, src, dst, []string{v3})
	if err != nil || len(plan.skip) != 2 {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	planFor = func(context.Context, *Engine, *Engine, []string) (layerPlan, error) {
		wrong := layerPlan{layers: plan.layers, skip: maps.Clone(plan.layers)}
		return wrong, nil
	}
	t.Cleanup(func() { planFor = planLayers })
	out.Reset()
	rep, err = Transfer(ctx, src, dst, []string{v3}, ui.Plain(&out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "sending every layer") || rep.LayersSent != 3 {
		t.Errorf("no second load with every layer: %+v\n%s", rep, out.String())
	}
	sameLayers(ctx, t, src, dst, v3)
}

// sameLayers checks that ref has the same image ID and layers on dst as on
// src.
func sameLayers(ctx context.Context, t *testing.T, src, dst *Engine, ref string) {
	t.Helper()
	a, err := src.API.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dst.API.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("%s on the second host: %v", ref, err)
	}
	if a.ID != b.ID || !slices.Equal(a.RootFS.Layers, b.RootFS.Layers) {
		t.Errorf("%s: %s %v on the source, %s %v on the second host", ref, a.ID, a.RootFS.Layers, b.ID, b.RootFS.Layers)
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
	var sent int64
	cr := &countingReader{r: pr, n: &sent}
	a.ProgressFunc(func(elapsed time.Duration) string { return rate(atomic.LoadInt64(&sent), elapsed) })
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
	if n, err := io.Copy(io.Discard, cr); n != 500_000 || err != nil || atomic.LoadInt64(&sent) != 2_000_000 {
		t.Errorf("rest: %d, %v; counted %d", n, err, atomic.LoadInt64(&sent))
	}
	a.Done(ui.OK, "sent 1 image(s), %s", ui.Bytes(atomic.LoadInt64(&sent)))
	if !strings.HasSuffix(out.String(), "✔ images                   sent 1 image(s), 2.0 MB\n") {
		t.Errorf("output:\n%s", out.String())
	}
}
