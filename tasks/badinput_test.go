package tasks_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/magefile/mage/mg"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks"
)

// snapshot records every path, mode and content under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := ""
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		out[rel] = info.Mode().String() + " " + sum
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var wantLine = regexp.MustCompile(`(?m)^# want: (\d+) (\S+)`)

// Every malformed catalog of the corpus makes render fail with exit status
// 2, an error naming file:line and key, and leaves a previously rendered
// deployment folder byte-identical.
func TestBadCatalogsLeaveFolderUntouched(t *testing.T) {
	p := testenv.SamplePlatform(t, "bad")
	t.Setenv("NO_COLOR", "1")
	t.Setenv("DEPLOY_CATALOG", p.Catalog)
	t.Setenv("DEPLOY_DIR", p.Deploy)
	if err := tasks.Render(context.Background()); err != nil {
		t.Fatalf("render the good catalog: %v", err)
	}
	before := snapshot(t, p.Deploy)
	if len(before) < 10 {
		t.Fatalf("rendered folder looks empty: %v", before)
	}

	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "tasks/catalog/testdata/bad/*.toml"))
	if len(files) < 30 {
		t.Fatalf("corpus has %d files, want at least 30", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Setenv("DEPLOY_CATALOG", f)
			err := tasks.Render(context.Background())
			if err == nil {
				t.Fatal("render accepted a malformed catalog")
			}
			if code := mg.ExitStatus(err); code != 2 {
				t.Errorf("exit status %d, want 2: %v", code, err)
			}
			src, _ := os.ReadFile(f)
			if m := wantLine.FindStringSubmatch(string(src)); m != nil {
				want := f + ":" + m[1] + ": " + m[2]
				if m[1] == "0" { // a problem of the whole file, such as no services
					want = f + ": " + m[2]
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not name %q:\n%v", want, err)
				}
			}
			if after := snapshot(t, p.Deploy); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("deployment folder changed")
			}
		})
	}
}
