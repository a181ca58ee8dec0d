package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
)

// Building an image: the first Build runs the engine's builder, the second
// finds the image by the content hash of its context and builds nothing.
// (It needs the Docker engine, as the package's tests do.)
func ExampleEngine_Build() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := engine.Connect(ctx, "") // DOCKER_HOST or the default socket
	if err != nil {
		fmt.Println(err) // says whether the daemon is down and what to do
		return
	}
	defer e.Close()
	dir, _ := os.MkdirTemp("", "example-build-")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY hello.txt /hello.txt\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
	name, err := testenv.Name("example")
	if err != nil {
		fmt.Println(err)
		return
	}
	repo := "enginetest/" + name
	spec := engine.BuildSpec{Service: "hello", Context: dir, Repo: repo,
		// The repository in a label makes the content (so the hash) this
		// example's own: an identical image from elsewhere would be reused.
		Labels: map[string]string{"org.example.repo": repo}}
	for range 2 {
		res, err := e.Build(ctx, []engine.BuildSpec{spec}, engine.BuildOptions{StateDir: dir})
		if err != nil {
			fmt.Println(err) // names every failed service with its output tail
			return
		}
		r := res[0]
		defer e.API.ImageRemove(context.Background(), r.ImageID, client.ImageRemoveOptions{Force: true})
		fmt.Printf("%s: cached=%v, tagged by its hash: %v\n", r.Service, r.Cached, r.Ref == repo+":"+r.Hash[:12])
	}
	// Output:
	// hello: cached=false, tagged by its hash: true
	// hello: cached=true, tagged by its hash: true
}
