package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func hashOf(t *testing.T, dir, dockerfile string, labels map[string]string) string {
	t.Helper()
	entries, err := contextEntries(dir, dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	h, err := contextHash(entries, dockerfile, nil, labels)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestContextHashHonoursDockerignore(t *testing.T) {
	base := map[string]string{
		"Dockerfile":        "FROM scratch\nCOPY . /\n",
		".dockerignore":     "# build leftovers\n*.log\ntmp/\nsecret/\n!secret/keep.txt\n**/*.bak\n",
		"app.txt":           "app",
		"debug.log":         "log",
		"tmp/cache":         "cache",
		"secret/key":        "k",
		"secret/keep.txt":   "keep",
		"sub/data.txt":      "data",
		"sub/deep/old.bak":  "old",
		"sub/deep/main.txt": "main",
	}
	tests := []struct {
		name    string
		change  func(t *testing.T, dir string)
		changes bool
	}{
		{"nothing", func(t *testing.T, dir string) {}, false},
		{"ignored file edited", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"debug.log": "other"}) }, false},
		{"ignored file added", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"new.log": "x"}) }, false},
		{"file in ignored folder", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"tmp/more": "x"}) }, false},
		{"ignored by ** pattern", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"sub/deep/old.bak": "new"}) }, false},
		{"excluded from an ignored folder", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"secret/key": "k2"}) }, false},
		{"included file edited", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"app.txt": "app2"}) }, true},
		{"nested included file edited", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"sub/deep/main.txt": "x"}) }, true},
		{"re-included by ! edited", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"secret/keep.txt": "x"}) }, true},
		{"included file added", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"sub/new.txt": ""}) }, true},
		{"empty folder added", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"empty/": ""}) }, true},
		{"included file removed", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "app.txt")) }, true},
		{"mode changed", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "app.txt"), 0o755) }, true},
		{"Dockerfile edited", func(t *testing.T, dir string) { writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n"}) }, true},
		{"dockerignore edited", func(t *testing.T, dir string) {
			writeFiles(t, dir, map[string]string{".dockerignore": "*.log\n"})
		}, true},
		{"symlink added", func(t *testing.T, dir string) { os.Symlink("app.txt", filepath.Join(dir, "link")) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, base)
			before := hashOf(t, dir, "Dockerfile", nil)
			tt.change(t, dir)
			after := hashOf(t, dir, "Dockerfile", nil)
			if (before != after) != tt.changes {
				t.Errorf("hash changed = %v, want %v", before != after, tt.changes)
			}
		})
	}
}

func TestContextHashCoversBuildSettings(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "other.Dockerfile": "FROM scratch\n"})
	a := hashOf(t, dir, "Dockerfile", nil)
	if b := hashOf(t, dir, "other.Dockerfile", nil); a == b {
		t.Error("the Dockerfile name is not in the hash")
	}
	if b := hashOf(t, dir, "Dockerfile", map[string]string{"k": "v"}); a == b {
		t.Error("labels are not in the hash")
	}
	entries, _ := contextEntries(dir, "Dockerfile")
	withArg, _ := contextHash(entries, "Dockerfile", map[string]string{"V": "1"}, nil)
	if withArg == a {
		t.Error("build args are not in the hash")
	}
	// Same content in another folder: same hash (paths are relative).
	dir2 := t.TempDir()
	writeFiles(t, dir2, map[string]string{"Dockerfile": "FROM scratch\n", "other.Dockerfile": "FROM scratch\n"})
	if b := hashOf(t, dir2, "Dockerfile", nil); a != b {
		t.Error("the hash depends on the context's location")
	}
}

// The sample services' .dockerignore ("*", "!app", "!Dockerfile") sends
// only the binary and the Dockerfile; the .dockerignore itself always goes,
// as the docker CLI sends it, and so does a Dockerfile the file excludes.
func TestContextEntriesAndTar(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".dockerignore": "*\n!app\n",
		"Dockerfile":    "FROM scratch\nCOPY app /app\n",
		"app":           "binary",
		"main.go":       "package main",
		"internal/x.go": "package x",
	})
	entries, err := contextEntries(dir, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.rel)
	}
	want := []string{".dockerignore", "Dockerfile", "app"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("context = %q, want %q", names, want)
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, entries); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
	}
	if got["app"] != "binary" || len(got) != 3 {
		t.Errorf("tar = %v", got)
	}
}
