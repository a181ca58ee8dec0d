package tasks_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magefile/mage/mg"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks"
)

// The import target: a broken compose file and one the catalog cannot
// carry whole both exit 2 and write nothing; -dryRun writes nothing and
// exits 0; -lossy imports.
func TestImportTarget(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	cat := filepath.Join(t.TempDir(), "services.toml")
	empty := "[project]\nname = \"shop\"\n"
	if err := os.WriteFile(cat, []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEPLOY_CATALOG", cat)
	corpus := filepath.Join(testenv.RepoRoot(), "tasks", "importer", "testdata", "corpus")
	yes := true
	unchanged := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(cat); string(b) != empty {
			t.Errorf("%s wrote the catalog:\n%s", what, b)
		}
	}
	for _, c := range []struct{ dir, want string }{
		{"26-broken-schema", "docker-compose.yml:6: services.web.restart_always: unknown key"},
		{"12-profiles", "services.debug.profiles"},
	} {
		err := tasks.Import(context.Background(), filepath.Join(corpus, c.dir), nil, nil, nil)
		if mg.ExitStatus(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: exit %d %v, want 2 and %q", c.dir, mg.ExitStatus(err), err, c.want)
		}
		unchanged(c.dir)
	}
	if err := tasks.Import(context.Background(), filepath.Join(corpus, "02-command-entrypoint"), &yes, nil, nil); err != nil {
		t.Errorf("-dryRun: %v", err)
	}
	unchanged("-dryRun")
	if err := tasks.Import(context.Background(), filepath.Join(corpus, "12-profiles"), nil, &yes, nil); err != nil {
		t.Fatalf("-lossy: %v", err)
	}
	if b, _ := os.ReadFile(cat); !strings.Contains(string(b), `name = "debug"`) || strings.Contains(string(b), "profiles =") {
		t.Errorf("-lossy did not import the service without its profiles:\n%s", b)
	}
}
