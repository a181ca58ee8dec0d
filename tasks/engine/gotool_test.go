package engine

import (
	"bytes"
	"context"
	"embed"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

//go:embed testdata/gohello
var helloSource embed.FS

// helloImage is the test program in repo: a command importing a package of
// its own module, run as a user that is not root.
func helloImage(repo string) GoImage {
	return GoImage{
		Name: "hello program", Repo: repo, Source: helloSource, Dir: "testdata/gohello",
		Module: "example.test/gohello", Package: "./cmd/hello", Binary: "hello", User: "65534",
		Labels: map[string]string{"org.example.test": "goimage"}, HashLabel: "org.example.test.hash",
	}
}

func TestEnsureGoImage(t *testing.T) {
	e := connect(t)
	testenv.RequireCommand(t, "go")
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "goimage")
	img := helloImage(repo)

	// Two callers at once wanting the missing image: one build.
	n0 := imageBuilds.Load()
	refs := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range refs {
		wg.Go(func() { refs[i], errs[i] = EnsureGoImage(ctx, e.API, img) })
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil {
			t.Fatalf("EnsureGoImage: %v", errs[i])
		}
	}
	ref := refs[0]
	if refs[1] != ref || imageBuilds.Load() != n0+1 {
		t.Fatalf("concurrent calls gave %v with %d ImageBuild calls, want one ref and one build", refs, imageBuilds.Load()-n0)
	}
	got, err := e.API.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	hash := got.Config.Labels["org.example.test.hash"]
	if len(hash) != 64 || ref != repo+":"+hash[:12] || got.Config.Labels["org.example.test"] != "goimage" {
		t.Errorf("image %s has labels %v, want the full hash (tag %s) and the image's labels", ref, got.Config.Labels, ref)
	}
	if got.Config.User != "65534" || strings.Join(got.Config.Entrypoint, " ") != "/hello" {
		t.Errorf("image user %q, entrypoint %q, want 65534 and /hello", got.Config.User, got.Config.Entrypoint)
	}
	out := runImage(t, e, ref)
	if want := "hello from linux/" + got.Architecture + " 65534"; out != want {
		t.Errorf("the image printed %q, want %q", out, want)
	}

	// Found again by its tag: no build, the same image.
	again, err := EnsureGoImage(ctx, e.API, img)
	if err != nil {
		t.Fatal(err)
	}
	if again != ref || imageBuilds.Load() != n0+1 {
		t.Fatalf("second call: %s after %d ImageBuild calls, want %s from 1", again, imageBuilds.Load()-n0, ref)
	}
	if still, err := e.API.ImageInspect(ctx, again); err != nil || still.ID != got.ID {
		t.Fatalf("second call's image %s (%v), want %s", still.ID, err, got.ID)
	}
}

// runImage runs ref's entrypoint once and returns what it printed.
func runImage(t *testing.T, e *Engine, ref string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := e.API.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: ref}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = e.API.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	}()
	wait := e.API.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.API.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 0 {
			t.Fatalf("%s exited %d", ref, r.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatal(err)
	}
	logs, err := e.API.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(stdout.String() + stderr.String())
}

// A program that does not compile, or no Go toolchain, stops before the
// engine is asked to build: no call, no tag, and the error says why.
func TestEnsureGoImageFailsBeforeBuilding(t *testing.T) {
	e := connect(t)
	testenv.RequireCommand(t, "go")
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "goimagebad")
	broken := GoImage{Name: "broken tool", Repo: repo, Module: "example.test/broken", Binary: "broken",
		Source: fstest.MapFS{"main.go": {Data: []byte("package main\n\nfunc main() { undefinedCall() }\n")}}}

	n0 := imageBuilds.Load()
	_, err := EnsureGoImage(ctx, e.API, broken)
	if err == nil || !strings.Contains(err.Error(), "go build broken tool") || !strings.Contains(err.Error(), "undefinedCall") {
		t.Errorf("broken source: %v, want the compiler's message", err)
	}

	t.Setenv("PATH", t.TempDir())
	_, err = EnsureGoImage(ctx, e.API, helloImage(repo))
	if err == nil || !strings.Contains(err.Error(), "building the hello program needs the Go toolchain, and go is not in PATH") {
		t.Errorf("no go in PATH: %v", err)
	}
	if imageBuilds.Load() != n0 {
		t.Errorf("%d ImageBuild calls, want none", imageBuilds.Load()-n0)
	}
	if tags := repoTags(t, e, repo); len(tags) > 0 {
		t.Errorf("failed builds left %v", tags)
	}
}

// syncModule is a program with a dependency outside the standard library:
// golang.org/x/sync at the version this repository requires, so that the
// module cache already holds it and the test needs no network.
func syncModule(repo string) GoImage {
	main := `package main

import (
	"fmt"

	"golang.org/x/sync/errgroup"
)

func main() {
	var g errgroup.Group
	g.Go(func() error { fmt.Println("synced"); return nil })
	_ = g.Wait()
}
`
	return GoImage{
		Name: "sync program", Repo: repo, Dir: ".", Module: "example.test/syncprog", Binary: "syncprog",
		Source: fstest.MapFS{"main.go": {Data: []byte(main)}},
		GoMod:  []byte("module example.test/syncprog\n\ngo 1.22\n\nrequire golang.org/x/sync v0.25.0\n"),
		GoSum: []byte("golang.org/x/sync v0.25.0 h1:dJnifr0nMV8/SBnBvdo4eSGGnrc3O4FFx6IqvtLcmRs=\n" +
			"golang.org/x/sync v0.25.0/go.mod h1:sUUOizhqBxiL6pEWpqNLUiaJn1ShEbZ6BBqskPbjZm0=\n"),
	}
}

// GoMod and GoSum make the throwaway module the caller's: its dependencies
// are resolved and verified against that go.sum.
func TestEnsureGoImageWithDependencies(t *testing.T) {
	e := connect(t)
	testenv.RequireCommand(t, "go")
	ctx := buildCtx(t)
	repo := uniqueRepo(t, e, "goimagedeps")

	// A go.sum that does not match the module is refused by the go tool:
	// the checksums given are the ones used.
	bad := syncModule(repo)
	bad.GoSum = []byte(strings.Replace(string(bad.GoSum), "h1:dJ", "h1:xx", 1))
	n0 := imageBuilds.Load()
	if _, err := EnsureGoImage(ctx, e.API, bad); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("wrong go.sum: %v, want the go tool's checksum mismatch", err)
	}
	if imageBuilds.Load() != n0 {
		t.Errorf("a failed compile still called ImageBuild")
	}

	ref, err := EnsureGoImage(ctx, e.API, syncModule(repo))
	if err != nil {
		t.Fatalf("EnsureGoImage: %v", err)
	}
	if out := runImage(t, e, ref); out != "synced" {
		t.Errorf("the image printed %q, want %q", out, "synced")
	}
}

func TestGoImageHash(t *testing.T) {
	base := helloImage("example.test/hello")
	h0, err := base.hash("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := base.hash("amd64"); again != h0 {
		t.Fatalf("hash is not stable: %s then %s", h0, again)
	}
	edited := fstest.MapFS{}
	err = fs.WalkDir(helloSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(helloSource, p)
		edited[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if same, _ := (func() GoImage { i := base; i.Source = edited; return i }()).hash("amd64"); same != h0 {
		t.Fatalf("the same files in another fs.FS hash differently")
	}
	edited["testdata/gohello/greet/greet.go"] = &fstest.MapFile{Data: append(edited["testdata/gohello/greet/greet.go"].Data, '\n')}

	// Everything that makes the image changes the tag.
	for name, change := range map[string]func(*GoImage){
		"source":     func(i *GoImage) { i.Source = edited },
		"module":     func(i *GoImage) { i.Module = "example.test/other" },
		"package":    func(i *GoImage) { i.Package = "./cmd/other" },
		"binary":     func(i *GoImage) { i.Binary = "hi" },
		"user":       func(i *GoImage) { i.User = "" },
		"label":      func(i *GoImage) { i.Labels = map[string]string{"org.example.test": "other"} },
		"hash label": func(i *GoImage) { i.HashLabel = "" },
	} {
		i := base
		change(&i)
		if h, err := i.hash("amd64"); err != nil || h == h0 {
			t.Errorf("changing the %s keeps the hash (%v)", name, err)
		}
	}
	// A go.mod and go.sum are part of what makes the image.
	deps := syncModule("r")
	hd, err := deps.hash("amd64")
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*GoImage){
		"go.mod": func(i *GoImage) { i.GoMod = append(i.GoMod, "// edited\n"...) },
		"go.sum": func(i *GoImage) { i.GoSum = nil },
	} {
		i := deps
		change(&i)
		if h, err := i.hash("amd64"); err != nil || h == hd {
			t.Errorf("changing the %s keeps the hash (%v)", name, err)
		}
	}
	if h, _ := base.hash("arm64"); h == h0 {
		t.Errorf("another architecture keeps the hash")
	}
	// The name is only for messages.
	named := base
	named.Name = "greeter"
	if h, _ := named.hash("amd64"); h != h0 {
		t.Errorf("the name changes the hash")
	}
}

func TestGoImageDockerfile(t *testing.T) {
	img := helloImage("r")
	if got, want := img.dockerfile(), "FROM scratch\nCOPY hello /hello\nUSER 65534\nENTRYPOINT [\"/hello\"]\n"; got != want {
		t.Errorf("dockerfile:\n%s\nwant:\n%s", got, want)
	}
	img.User = ""
	if got := img.dockerfile(); strings.Contains(got, "USER") {
		t.Errorf("no user gives %q", got)
	}
}

// A bad description is refused before the engine is asked anything: api
// is nil here.
func TestEnsureGoImageRejectsBadImages(t *testing.T) {
	ok := helloImage("example.test/hello")
	for name, tc := range map[string]struct {
		change func(*GoImage)
		want   string
	}{
		"no repo":      {func(i *GoImage) { i.Repo = "" }, "no repository"},
		"tagged repo":  {func(i *GoImage) { i.Repo = "localhost:5000/hello:v1" }, "must not carry a tag"},
		"digest":       {func(i *GoImage) { i.Repo = "hello@sha256:00" }, "must not carry a tag"},
		"no source":    {func(i *GoImage) { i.Source = nil }, "no source"},
		"no module":    {func(i *GoImage) { i.Module = "" }, "no module path"},
		"no binary":    {func(i *GoImage) { i.Binary = "" }, "must be a plain file name"},
		"binary path":  {func(i *GoImage) { i.Binary = "bin/hello" }, "must be a plain file name"},
		"dockerfile":   {func(i *GoImage) { i.Binary = "Dockerfile" }, "must be a plain file name"},
		"user":         {func(i *GoImage) { i.User = "1 2" }, "must be one word"},
		"dir escapes":  {func(i *GoImage) { i.Dir = "../x" }, "not a valid path"},
		"go.sum alone": {func(i *GoImage) { i.GoSum = []byte("x v1.0.0 h1:x=\n") }, "a go.sum without a go.mod"},
		"go.mod of another module": {func(i *GoImage) { i.GoMod = []byte("module example.test/other\n\ngo 1.22\n") },
			`declares module "example.test/other", want "example.test/gohello"`},
		"go.mod without module": {func(i *GoImage) { i.GoMod = []byte("go 1.22\n") }, `declares module ""`},
	} {
		t.Run(name, func(t *testing.T) {
			img := ok
			tc.change(&img)
			_, err := EnsureGoImage(context.Background(), nil, img)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := ok.normalize(); err != nil {
		t.Errorf("the good image is refused: %v", err)
	}
	withMod := ok
	withMod.GoMod = []byte("// a comment\nmodule \"example.test/gohello\" // quoted\n\ngo 1.22\n")
	if _, err := withMod.normalize(); err != nil {
		t.Errorf("a go.mod naming the module is refused: %v", err)
	}
}

func TestStreamError(t *testing.T) {
	for name, tc := range map[string]struct{ stream, want string }{
		"success": {`{"stream":"Step 1/2 : FROM scratch\n"}` + "\n" + `{"aux":{"ID":"sha256:ab"}}` + "\n" + `{"stream":"Successfully built ab\n"}`, ""},
		"empty":   {"", ""},
		"error":   {`{"stream":"Step 1/2\n"}{"errorDetail":{"code":1,"message":"COPY failed: no such file\n"},"error":"COPY failed: no such file\n"}`, "COPY failed: no such file"},
		// The detail is the precise message when both are given.
		"detail first": {`{"errorDetail":{"message":"precise"},"error":"vague"}`, "precise"},
		"error only":   {`{"error":"open /x: no such file"}`, "open /x: no such file"},
		"load error":   {`{"stream":"Loaded image: a:b\n"}` + "\n" + `{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}`, "unexpected EOF"},
		"not json":     {`{"stream":"ok"}` + "\nGateway Timeout", "invalid character"},
	} {
		t.Run(name, func(t *testing.T) {
			err := StreamError(strings.NewReader(tc.stream))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			case err != nil && err.Error() != strings.TrimSpace(err.Error()):
				t.Errorf("error %q keeps the stream's newline", err)
			}
		})
	}
}
