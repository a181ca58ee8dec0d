package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/moby/moby/client"
)

// connect reaches the local engine or skips (fails under CI).
func connect(t testing.TB) *Engine {
	t.Helper()
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// uniqueRepo returns a repository name no other test uses, and removes
// every image tagged in it when the test ends.
func uniqueRepo(t testing.TB, e *Engine, what string) string {
	t.Helper()
	repo := "enginetest/" + testenv.ProjectName(t, what)
	t.Cleanup(func() { removeRepo(t, e, repo) })
	return repo
}

// fresh returns labels, extra among them, that make a spec's content hash
// unique to repo. Unique names alone would not do: findImage reuses an
// identical build under any repository, such as one an interrupted earlier
// run left in the engine, and a build a test expects to run would then be
// found cached.
func fresh(repo string, extra map[string]string) map[string]string {
	out := map[string]string{"io.maestro.test-repo": repo}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func removeRepo(t testing.TB, e *Engine, repo string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ref := range repoTags(t, e, repo) {
		if _, err := e.API.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !IsNotFound(err) {
			t.Logf("cleanup: remove %s: %v", ref, err)
		}
	}
}

// repoTags lists the tags present in repo.
func repoTags(t testing.TB, e *Engine, repo string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := e.API.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", repo)})
	if err != nil {
		t.Fatalf("list %s: %v", repo, err)
	}
	var tags []string
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, repo+":") {
				tags = append(tags, tag)
			}
		}
	}
	return tags
}

// writeFiles creates files under dir; a name ending in "/" is a folder.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
