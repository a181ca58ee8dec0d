package engine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

func buildCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestBuildCachesByContentHash(t *testing.T) {
	e := connect(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "hash")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY hello.txt /hello.txt\n",
		".dockerignore": "*.log\n",
		"hello.txt":     "hello\n",
	})
	spec := BuildSpec{Service: "hello", Context: dir, Repo: repo, Labels: fresh(repo, map[string]string{"org.example.team": "platform"})}
	var out bytes.Buffer
	opts := BuildOptions{Printer: ui.Plain(&out), StateDir: t.TempDir()}

	n0 := imageBuilds.Load()
	res, err := e.Build(ctx, []BuildSpec{spec}, opts)
	if err != nil {
		t.Fatal(err)
	}
	first := res[0]
	if first.Cached || imageBuilds.Load() != n0+1 {
		t.Fatalf("first build: cached=%v, ImageBuild calls=%d, want a real build", first.Cached, imageBuilds.Load()-n0)
	}
	if first.Ref != repo+":"+first.Hash[:12] || first.Service != "hello" {
		t.Errorf("result = %+v", first)
	}
	img, err := e.API.ImageInspect(ctx, first.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != first.ImageID || img.Config.Labels[labels.ContextHash] != first.Hash || img.Config.Labels["org.example.team"] != "platform" {
		t.Errorf("image %s labels %v, want hash %s and the spec's labels", img.ID, img.Config.Labels, first.Hash)
	}
	if id, _ := e.ImageID(ctx, repo+":latest"); id != first.ImageID {
		t.Errorf("latest = %s, want %s", id, first.ImageID)
	}
	if !strings.Contains(out.String(), "built "+first.Ref) {
		t.Errorf("no built line in %q", out.String())
	}

	// Unchanged (an ignored file changes nothing): no ImageBuild call.
	writeFiles(t, dir, map[string]string{"noise.log": "x"})
	out.Reset()
	res, err = e.Build(ctx, []BuildSpec{spec}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Cached || res[0].ImageID != first.ImageID || imageBuilds.Load() != n0+1 {
		t.Fatalf("second build: %+v, ImageBuild calls=%d, want cached", res[0], imageBuilds.Load()-n0)
	}
	if !strings.Contains(out.String(), "cached") {
		t.Errorf("no cached line in %q", out.String())
	}

	// A changed file: rebuilt, latest moves, the old image keeps its hash tag.
	writeFiles(t, dir, map[string]string{"hello.txt": "hello again\n"})
	res, err = e.Build(ctx, []BuildSpec{spec}, opts)
	if err != nil {
		t.Fatal(err)
	}
	second := res[0]
	if second.Cached || second.Hash == first.Hash || second.ImageID == first.ImageID || imageBuilds.Load() != n0+2 {
		t.Fatalf("after a change: %+v, want a new build", second)
	}
	if id, _ := e.ImageID(ctx, repo+":latest"); id != second.ImageID {
		t.Errorf("latest = %s, want the new image %s", id, second.ImageID)
	}

	// Back to the first content: the first image is reused and latest
	// moves back to it, still without a build.
	writeFiles(t, dir, map[string]string{"hello.txt": "hello\n"})
	res, err = e.Build(ctx, []BuildSpec{spec}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Cached || res[0].ImageID != first.ImageID || imageBuilds.Load() != n0+2 {
		t.Fatalf("revert: %+v, want the first image, cached", res[0])
	}
	if id, _ := e.ImageID(ctx, repo+":latest"); id != first.ImageID {
		t.Errorf("latest = %s after revert, want %s", id, first.ImageID)
	}
}

func TestBuildFailureLeavesNoTag(t *testing.T) {
	for _, builder := range []string{"buildkit", "classic"} {
		t.Run(builder, func(t *testing.T) {
			t.Setenv(BuilderEnv, builder)
			buildFailureLeavesNoTag(t, builder == "classic")
		})
	}
}

func buildFailureLeavesNoTag(t *testing.T, classic bool) {
	e := connect(t)
	ctx := buildCtx(t)
	badRepo := uniqueRepo(t, e, "bad")
	slowRepo := uniqueRepo(t, e, "slow")
	bad, slow := t.TempDir(), t.TempDir()
	writeFiles(t, bad, map[string]string{"Dockerfile": "FROM scratch\nCOPY present.txt /p\nCOPY missing /x\n", "present.txt": "p"})
	writeFiles(t, slow, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.txt /a\n", "a.txt": "a"})
	specs := []BuildSpec{
		{Service: "broken", Context: bad, Repo: badRepo, Labels: fresh(badRepo, nil)},
		// The prebuild outlives the broken build: it must be cancelled.
		{Service: "slow", Context: slow, Repo: slowRepo, Labels: fresh(slowRepo, nil), Prebuild: []string{"sleep", "600"}},
	}
	var out bytes.Buffer
	_, err := e.Build(ctx, specs, BuildOptions{Parallel: 2, Printer: ui.Plain(&out), StateDir: t.TempDir()})
	if err == nil {
		t.Fatal("a Dockerfile copying a missing file built")
	}
	msg := err.Error()
	t.Logf("error:\n%s\noutput:\n%s", msg, out.String())
	for _, want := range []string{"build broken", "missing", "COPY missing /x", "cancelled because broken failed: slow"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	if tags := repoTags(t, e, badRepo); len(tags) != 0 {
		t.Errorf("failed build left tags %v", tags)
	}
	// The classic builder commits each step: the image of the last good
	// one must go. BuildKit makes no image for a failed build.
	if classic {
		if !strings.Contains(msg, "---> ") {
			t.Fatalf("no intermediate layer in the output tail:\n%s", msg)
		}
		layer := msg[strings.LastIndex(msg, "---> ")+5:][:12]
		if _, err := e.ImageID(ctx, layer); !IsNotFound(err) {
			t.Errorf("the failed build's intermediate image %s is left behind (%v)", layer, err)
		}
	}
	if tags := repoTags(t, e, slowRepo); len(tags) != 0 {
		t.Errorf("cancelled build left tags %v", tags)
	}
	if !strings.Contains(out.String(), "broken") || !strings.Contains(out.String(), "failed after") {
		t.Errorf("no failure line: %q", out.String())
	}
}

func TestPrebuildRunsOnlyWhenInputsChange(t *testing.T) {
	e := connect(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "pre")
	root := t.TempDir()
	src := filepath.Join(root, "src")
	runs := filepath.Join(root, "runs")
	writeFiles(t, src, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY out.txt /out.txt\n",
		".dockerignore": "*\n!out.txt\n",
		"input.txt":     "v1",
	})
	spec := BuildSpec{Service: "pre", Context: src, Repo: repo, Labels: fresh(repo, nil),
		// A test stand-in for `go build`: derives the output from the input
		// and counts its runs outside the inputs.
		Prebuild:        []string{"sh", "-c", `cp input.txt out.txt && echo "$MARK" >> "$RUNS"`},
		PrebuildEnv:     map[string]string{"RUNS": runs, "MARK": "ran"},
		PrebuildOutputs: []string{"out.txt"},
	}
	opts := BuildOptions{StateDir: t.TempDir()}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "ran\n")
	}
	build := func() BuildResult {
		t.Helper()
		res, err := e.Build(ctx, []BuildSpec{spec}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}

	if r := build(); r.PrebuildSkipped || count() != 1 || r.Cached {
		t.Fatalf("first: %+v runs=%d", r, count())
	}
	if r := build(); !r.PrebuildSkipped || count() != 1 || !r.Cached {
		t.Fatalf("second: %+v runs=%d, want prebuild skipped and image cached", r, count())
	}
	// The output is not an input: rewriting it does not trigger a run.
	writeFiles(t, src, map[string]string{"input.txt": "v2"})
	if r := build(); r.PrebuildSkipped || count() != 2 || r.Cached {
		t.Fatalf("after input change: %+v runs=%d, want a prebuild and a build", r, count())
	}
	os.Remove(filepath.Join(src, "out.txt"))
	if r := build(); r.PrebuildSkipped || count() != 3 {
		t.Fatalf("after output removed: %+v runs=%d, want the prebuild to run", r, count())
	}
	// A changed command runs again too.
	spec.PrebuildEnv = map[string]string{"RUNS": runs, "MARK": "ran", "EXTRA": "1"}
	if r := build(); r.PrebuildSkipped || count() != 4 {
		t.Fatalf("after env change: %+v runs=%d", r, count())
	}

	// A failing prebuild: a clear error with its output, no build.
	spec.Prebuild = []string{"sh", "-c", "echo compiling; echo 'main.go:3: undefined: nope' >&2; exit 7"}
	n := imageBuilds.Load()
	_, err := e.Build(ctx, []BuildSpec{spec}, opts)
	if err == nil {
		t.Fatal("failing prebuild succeeded")
	}
	t.Logf("error:\n%v", err)
	for _, want := range []string{"build pre", "prebuild `sh -c", "exit status 7", "main.go:3: undefined: nope", "compiling"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if imageBuilds.Load() != n {
		t.Error("an image was built after a failed prebuild")
	}
}

// While a slow prebuild runs, its line is already printed, and moving the
// clock 10s on prints a progress line carrying its output; the result
// lines follow. The stand-in prebuild waits on a FIFO that the test opens
// only after it saw those lines, so they cannot come from after the
// prebuild ended.
func TestBuildShowsSlowPrebuildWhileItRuns(t *testing.T) {
	e := connect(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "slow")
	src := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, src, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY out.txt /out.txt\n",
		".dockerignore": "*\n!out.txt\n",
		"input.txt":     "v1",
	})
	spec := BuildSpec{Service: "slow", Context: src, Repo: repo, Labels: fresh(repo, nil),
		Prebuild:        []string{"sh", "-c", `echo "compiling step 1"; read x < "$GATE"; cp input.txt out.txt`},
		PrebuildEnv:     map[string]string{"GATE": gate},
		PrebuildOutputs: []string{"out.txt"},
	}
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := ui.Plain(&out)
	p.SetClock(clk)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = e.Build(ctx, []BuildSpec{spec}, BuildOptions{Printer: p, StateDir: t.TempDir()})
	}()
	out.WaitFor(t, "prebuilding (sh -c", done)
	// The output line reaches the live line through a pipe: move the
	// clock on until a progress line carries it.
	for !strings.Contains(out.String(), "s: compiling step 1\n") {
		clk.Advance(ui.ProgressEvery)
		select {
		case <-done:
			t.Fatalf("the build ended before the test let the prebuild go: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := os.Stat(filepath.Join(src, "out.txt")); err == nil {
		t.Fatal("the prebuild finished before the test let it")
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Logf("output:\n%s", text)
	last := -1
	for _, want := range []string{"… slow                     prebuilding (sh -c", "still prebuilding (sh -c", ": compiling step 1",
		"• slow                     prebuilt (sh -c", "… slow                     building " + repo, "✔ slow                     built " + repo} {
		i := strings.Index(text, want)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order:\n%s", want, text)
		}
		last = i
	}
}

func TestBuildRejectsBadSpecs(t *testing.T) {
	e := &Engine{} // never reached: specs are checked first
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n"})
	for _, tt := range []struct {
		spec BuildSpec
		want string
	}{
		{BuildSpec{Service: "a", Context: "rel/path", Repo: "x/a"}, "not an absolute path"},
		{BuildSpec{Service: "a", Context: dir}, "no image repository"},
		{BuildSpec{Service: "a", Context: dir, Repo: "x/a:v1"}, "must not carry a tag"},
		{BuildSpec{Service: "a", Context: dir, Repo: "x/a", Dockerfile: "nope"}, "no Dockerfile at"},
		{BuildSpec{Service: "a", Context: dir, Repo: "x/a", Dockerfile: "/etc/passwd"}, "outside the context"},
	} {
		_, err := e.Build(context.Background(), []BuildSpec{tt.spec}, BuildOptions{StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.spec, err, tt.want)
		}
	}
	_, err := e.Build(context.Background(), []BuildSpec{
		{Service: "a", Context: dir, Repo: "x/same"}, {Service: "b", Context: dir, Repo: "x/same"}}, BuildOptions{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "also used by a") {
		t.Errorf("duplicate repo: err = %v", err)
	}
}

// BenchmarkBuildNoop measures what an unchanged deployment pays for its
// build step: prebuild stamps, context hashes of five services with a
// sample-sized binary each, and one ImageList.
func BenchmarkBuildNoop(b *testing.B) {
	e := connect(b)
	ctx := context.Background()
	state := b.TempDir()
	bin := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16) // about the size of a sample service binary
	var specs []BuildSpec
	for i := range 5 {
		dir := b.TempDir()
		writeFiles(b, dir, map[string]string{
			"Dockerfile":    "FROM scratch\nCOPY app /app\n",
			".dockerignore": "*\n!app\n",
			"main.go":       "package main\n",
		})
		if err := os.WriteFile(filepath.Join(dir, "app"), append(bin, byte(i)), 0o755); err != nil {
			b.Fatal(err)
		}
		repo := uniqueRepo(b, e, "bench")
		specs = append(specs, BuildSpec{Service: "svc" + string(rune('a'+i)), Context: dir, Repo: repo, Labels: fresh(repo, nil),
			Prebuild: []string{"true"}, PrebuildOutputs: []string{"app"}})
	}
	if _, err := e.Build(ctx, specs, BuildOptions{StateDir: state}); err != nil {
		b.Fatal(err)
	}
	n := imageBuilds.Load()
	for b.Loop() {
		res, err := e.Build(ctx, specs, BuildOptions{StateDir: state})
		if err != nil {
			b.Fatal(err)
		}
		if !slices.ContainsFunc(res, func(r BuildResult) bool { return r.Cached && r.PrebuildSkipped }) {
			b.Fatal("noop build was not cached")
		}
	}
	if imageBuilds.Load() != n {
		b.Fatal("noop build called ImageBuild")
	}
}

func noWait(what string) {}

// The first prebuild of a program runs before the others of that program
// start; prebuilds of another program do not wait for it. A prebuild that
// waits is told what for, which its live line shows.
func TestPrebuildSlotsFirstRunAlone(t *testing.T) {
	ctx := context.Background()
	slots := newPrebuildSlots(3)
	waiting := make(chan string, 4)
	testHookPrebuildWaits = func(p string) { waiting <- p }
	defer func() { testHookPrebuildWaits = nil }()

	releaseFirst, err := slots.acquire(ctx, "go", noWait)
	if err != nil {
		t.Fatal(err)
	}
	releaseOther, err := slots.acquire(ctx, "sh", noWait) // another program: at once
	if err != nil {
		t.Fatal(err)
	}
	releaseOther()
	acquired := make(chan func(), 1)
	var why string
	go func() {
		rel, err := slots.acquire(ctx, "go", func(w string) { why = w })
		if err != nil {
			t.Error(err)
		}
		acquired <- rel
	}()
	if p := <-waiting; p != "go" {
		t.Fatalf("waited for %q", p)
	}
	select {
	case <-acquired:
		t.Fatal("a second go prebuild started while the first ran")
	default:
	}
	releaseFirst()
	(<-acquired)()
	if why != "the first go prebuild" {
		t.Errorf("the waiting prebuild was told it waits for %q", why)
	}

	// A first run that was cancelled lets the others go.
	ctx2, cancel := context.WithCancel(ctx)
	blocker := newPrebuildSlots(1)
	relB, _ := blocker.acquire(ctx, "x", noWait)
	cancel()
	why = ""
	if _, err := blocker.acquire(ctx2, "y", func(w string) { why = w }); err == nil {
		t.Fatal("acquire on a cancelled context succeeded")
	}
	if why != "a free CPU" {
		t.Errorf("a prebuild without a free slot was told it waits for %q", why)
	}
	relB()
	if rel, err := blocker.acquire(ctx, "y", noWait); err != nil {
		t.Fatalf("after a cancelled first run of y: %v", err)
	} else {
		rel()
	}
}

// TestBuildArgsAndTarget: build arguments reach the Dockerfile and the
// target picks its stage; both are part of the content hash, so a
// changed argument or target builds another image.
func TestBuildArgsAndTarget(t *testing.T) {
	e := connect(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "target")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM scratch AS debug\nARG FLAVOUR\nLABEL stage=debug flavour=$FLAVOUR\nCOPY a.txt /a.txt\n" +
			"FROM scratch AS runtime\nARG FLAVOUR\nLABEL stage=runtime flavour=$FLAVOUR\nCOPY a.txt /a.txt\n",
		"a.txt": "a\n",
	})
	opts := BuildOptions{StateDir: t.TempDir()}
	build := func(target, flavour string) BuildResult {
		t.Helper()
		spec := BuildSpec{Service: "t", Context: dir, Repo: repo, Labels: fresh(repo, nil),
			Target: target, BuildArgs: map[string]string{"FLAVOUR": flavour}}
		res, err := e.Build(ctx, []BuildSpec{spec}, opts)
		if err != nil {
			t.Fatal(err)
		}
		img, err := e.API.ImageInspect(ctx, res[0].Ref)
		if err != nil {
			t.Fatal(err)
		}
		want := target
		if want == "" {
			want = "runtime" // the last stage
		}
		if l := img.Config.Labels; l["stage"] != want || l["flavour"] != flavour {
			t.Errorf("target %q flavour %q: labels %v", target, flavour, l)
		}
		return res[0]
	}
	last, debug, other := build("", "plain"), build("debug", "plain"), build("debug", "spicy")
	if last.Hash == debug.Hash || debug.Hash == other.Hash || last.Hash == other.Hash {
		t.Errorf("hashes %s %s %s: target and arguments must each make another image", last.Hash, debug.Hash, other.Hash)
	}
	if again := build("debug", "plain"); !again.Cached || again.ImageID != debug.ImageID {
		t.Errorf("the same target and arguments again: %+v, want the cached image", again)
	}
}

// An image under <repo>:latest that mage did not build (deploy-all.sh
// builds with compose, under the tag the compose file names) is named on
// the service's line when mage builds by content and moves the tag; once
// latest is mage's own, nothing more is said.
func TestBuildSaysLatestWasBuiltOutside(t *testing.T) {
	e := connect(t)
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "outside")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "hello\n",
	})
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", repo+":latest", dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	spec := BuildSpec{Service: "hello", Context: dir, Repo: repo, Labels: fresh(repo, nil)}
	var out bytes.Buffer
	opts := BuildOptions{Printer: ui.Plain(&out), StateDir: t.TempDir()}
	res, err := e.Build(ctx, []BuildSpec{spec}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := "built " + res[0].Ref + " in "
	note := repo + ":latest was built outside mage (deploy-all.sh?) and now names this build"
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), note) {
		t.Errorf("the build line does not say that latest was built outside mage:\n%s", out.String())
	}
	if id, _ := e.ImageID(ctx, repo+":latest"); id != res[0].ImageID {
		t.Errorf("latest = %s, want mage's build %s", id, res[0].ImageID)
	}

	writeFiles(t, dir, map[string]string{"hello.txt": "hello again\n"})
	out.Reset()
	if _, err := e.Build(ctx, []BuildSpec{spec}, opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "built ") || strings.Contains(out.String(), "outside mage") {
		t.Errorf("a build over mage's own latest says it was built outside mage:\n%s", out.String())
	}
}
