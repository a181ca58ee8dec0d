package importer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// sampleRepos are the sample platform's service folders, each with the
// docker-compose.yml and .env.example of its repository.
var sampleRepos = []string{
	"infrastructure/state-store",
	"services/template-service",
	"services/automation-service",
	"services/k8s-execution-service",
	"quality-fabric",
	"maestro-engine",
}

func samplePaths(root string) []string {
	out := make([]string, len(sampleRepos))
	for i, r := range sampleRepos {
		out[i] = filepath.Join(root, "examples", "maestro-platform", r)
	}
	return out
}

// emptyCatalog writes a catalog with a project and nothing else, in a
// folder of its own or at root.
func emptyCatalog(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(p, []byte("[project]\nname = \"maestro\"\ndeploy_dir = \"~/deployment\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportTwiceChangesNothing: the second import of the same files
// finds every service in the catalog and writes nothing.
func TestImportTwiceChangesNothing(t *testing.T) {
	root := testenv.RepoRoot()
	cat := emptyCatalog(t, t.TempDir())
	opts := Options{Catalog: cat, Paths: samplePaths(root), Prebuild: true, Out: &bytes.Buffer{}}
	res, err := Import(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || len(res.Added) != 6 || len(res.Losses) != 0 {
		t.Fatalf("first import: %+v", res)
	}
	first, _ := os.ReadFile(cat)
	fi, _ := os.Stat(cat)
	res, err = Import(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || res.Diff != "" || len(res.Added) != 0 || len(res.Kept) != 6 {
		t.Errorf("second import changed something: %+v", res)
	}
	second, _ := os.ReadFile(cat)
	fi2, _ := os.Stat(cat)
	if !bytes.Equal(first, second) || !fi.ModTime().Equal(fi2.ModTime()) {
		t.Error("the second import touched the catalog")
	}
}

// TestImportKeepsWhatIsThere: what the catalog holds is never changed, a
// dry run writes nothing, and a refused import writes nothing.
func TestImportKeepsWhatIsThere(t *testing.T) {
	root := testenv.RepoRoot()
	dir := t.TempDir()
	cat := filepath.Join(dir, "services.toml")
	// The repository's own catalog, moved: sources stay where they are.
	src, err := os.ReadFile(filepath.Join(root, "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(src), `source = "examples/`, `source = "`+root+`/examples/`)
	text = strings.ReplaceAll(text, `"examples/maestro-platform`, `"`+root+`/examples/maestro-platform`)
	if err := os.WriteFile(cat, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Load(cat); err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join("testdata", "corpus")
	var out bytes.Buffer
	opts := Options{Catalog: cat, Paths: append(samplePaths(root), filepath.Join(corpus, "02-command-entrypoint")),
		Prebuild: true, Out: &out, DryRun: true}
	res, err := Import(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 6 || !reflect.DeepEqual(res.Added, []string{"web", "job"}) || res.Written {
		t.Fatalf("dry run: %+v", res)
	}
	if b, _ := os.ReadFile(cat); string(b) != text {
		t.Fatal("a dry run wrote the catalog")
	}
	if !strings.Contains(out.String(), "+++ b/services.toml") || !strings.Contains(out.String(), "kept: maestro-gateway") {
		t.Errorf("dry run output:\n%s", out.String())
	}
	opts.DryRun = false
	if _, err := Import(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(cat)
	if !strings.HasPrefix(string(after), text) || len(after) == len(text) {
		t.Errorf("the catalog's text changed, or nothing was added")
	}
	if fi, _ := os.Stat(cat); fi.Mode().Perm() != 0o600 {
		t.Errorf("catalog mode %v, want its own 0600 kept", fi.Mode().Perm())
	}
	if _, err := catalog.Load(cat); err != nil {
		t.Errorf("the catalog does not load after the import: %v", err)
	}

	// Refused: losses without -lossy, and a broken file; nothing written.
	for _, p := range []string{"12-profiles", "26-broken-schema"} {
		before, _ := os.ReadFile(cat)
		_, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{filepath.Join(corpus, p)}, Prebuild: true, Out: &bytes.Buffer{}})
		var le *LossError
		var ce catalog.Errors
		if !errors.As(err, &le) && !errors.As(err, &ce) {
			t.Errorf("%s: %v, want losses or file:line errors", p, err)
		}
		if b, _ := os.ReadFile(cat); !bytes.Equal(b, before) {
			t.Errorf("%s: a refused import wrote the catalog", p)
		}
	}
}

// TestSampleImportIsTheCatalog: the sample platform's compose files
// imported into an empty catalog give today's services.toml, but for
// what the catalog file says that compose files cannot (the gateway's dev
// default for its token) and what they say that it does not (the state
// store's expose).
func TestSampleImportIsTheCatalog(t *testing.T) {
	root := testenv.RepoRoot()
	cat := emptyCatalog(t, t.TempDir()) // paths are absolute once loaded, wherever the catalog is
	if _, err := Import(context.Background(), Options{Catalog: cat, Paths: samplePaths(root), Prebuild: true, Out: &bytes.Buffer{}}); err != nil {
		t.Fatal(err)
	}
	got, err := catalog.Load(cat)
	if err != nil {
		t.Fatal(err)
	}
	want, err := catalog.Load(filepath.Join(root, "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != len(want.Services) || len(got.Infrastructure) != len(want.Infrastructure) {
		t.Fatalf("%d services and %d infrastructure, want %d and %d", len(got.Services), len(got.Infrastructure), len(want.Services), len(want.Infrastructure))
	}
	for _, w := range want.All() {
		g, ok := got.Service(w.Name)
		if !ok {
			t.Errorf("%s not imported", w.Name)
			continue
		}
		if g.Infra != w.Infra {
			t.Errorf("%s: infrastructure %v, want %v", w.Name, g.Infra, w.Infra)
		}
		gc, wc := *g, *w
		// Not the service's, or said only by one side.
		for _, s := range []*catalog.Service{&gc, &wc} {
			s.Line, s.SecretDefaults, s.Secrets, s.SecretPlaces = 0, nil, nil, nil
			for _, c := range s.Checks {
				c.Line = 0
			}
		}
		if w.Name == "state-store" {
			if !reflect.DeepEqual(gc.Compose, map[string]any{"expose": []any{"6380"}}) {
				t.Errorf("state-store compose %v, want the expose of its compose file", gc.Compose)
			}
			gc.Compose = nil
		}
		if len(gc.Compose) == 0 {
			gc.Compose = nil
		}
		if len(wc.Compose) == 0 {
			wc.Compose = nil
		}
		gc.DependsOn, wc.DependsOn = sorted(gc.DependsOn), sorted(wc.DependsOn)
		if !reflect.DeepEqual(gc, wc) {
			t.Errorf("%s imported as\n%+v\nwant\n%+v", w.Name, gc, wc)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestImportRenderedFiles: a catalog's own rendered compose file imports
// into a catalog that renders it again, service for service (but for the
// published host ports, which follow the dev-port rule); imported into
// the catalog it came from, it changes nothing.
func TestImportRenderedFiles(t *testing.T) {
	clis := composeCLIs(t)
	root := testenv.RepoRoot()
	orig, err := catalog.Load(filepath.Join(root, "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(t.TempDir(), "deployment")
	writeTree(t, orig, first)

	dir := t.TempDir()
	cat := emptyCatalog(t, dir)
	var out bytes.Buffer
	res, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{first}, Prebuild: true, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res.Added) != 6 || len(res.Losses) != 0 {
		t.Fatalf("import of the rendered file: %+v", res)
	}
	again, err := catalog.Load(cat)
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := again.Service("maestro-gateway")
	if !reflect.DeepEqual(gw.SecretNames, []string{"GATEWAY_API_TOKEN"}) {
		t.Errorf("the gateway's token is not a secret: %v", gw.SecretNames)
	}
	gw.Secrets = map[string]string{"GATEWAY_API_TOKEN": "change-me-dev-token"} // as resolved from outside
	second := filepath.Join(dir, "deployment")
	writeTree(t, again, second)
	for _, c := range clis {
		roundTrip(t, c.name, again, config(t, c, first, "", nil), config(t, c, second, "", nil))
	}

	// Twice: nothing changes the second time.
	before, _ := os.ReadFile(cat)
	res, err = Import(context.Background(), Options{Catalog: cat, Paths: []string{second}, Prebuild: true, Out: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(cat); res.Written || !bytes.Equal(before, after) || len(res.Kept) != 6 {
		t.Errorf("importing the rendered files again changed the catalog: %+v", res)
	}
}

func writeTree(t *testing.T, cat *catalog.Catalog, dir string) {
	t.Helper()
	tree, err := render.Render(cat, cat.Environments["dev"], render.Options{Build: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestTOMLValues: what import writes reads back as the value it was.
func TestTOMLValues(t *testing.T) {
	values := map[string]any{
		"plain":   "a",
		"quotes":  `say "hi" \ bye`,
		"control": "tab\there\nnew line\x01\x7f",
		"unicode": "grüße – ☃",
		"dollar":  "$HOME ${X} $$",
		"number":  int64(-42),
		"float":   0.5,
		"whole":   2.0,
		"bool":    true,
		"list":    []any{"a", int64(1), []any{"nested"}},
		"table":   map[string]any{"max-size": "10m", "a.b": "dotted", "": "empty key"},
	}
	var b strings.Builder
	for k, v := range values {
		b.WriteString(tomlKey(k) + " = " + tomlInline(v) + "\n")
	}
	var got map[string]any
	if _, err := toml.Decode(b.String(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if !reflect.DeepEqual(got, values) {
		t.Errorf("read back\n%#v\nwant\n%#v\nfrom\n%s", got, values, b.String())
	}
}

func TestSecretRules(t *testing.T) {
	for name, want := range map[string]bool{
		"DB_PASSWORD": true, "PASSWORD": true, "db_pass": true, "API_TOKEN": true, "GITHUB_TOKEN": true,
		"AWS_SECRET_ACCESS_KEY": true, "STRIPE_API_KEY": true, "APIKEY": true, "SESSION_KEY": true,
		"CREDENTIALS": true, "PRIVATE_KEY_PATH": true, "GITHUB_PAT": true, "ME_CONFIG_MONGODB_ADMINPASSWORD": true,
		"OAUTH_ACCESSTOKEN": true, "DB_PASSWORDS": true, "PATH": false, "PATTERN": false, "BYPASS_CACHE": false,
		"PASSWORDLESS_LOGIN": false,
		"PASSENGER_COUNT":    false, "KEYBOARD": false, "MONKEY": false, "LOG_LEVEL": false, "KEY_COUNT": false,
		"TOKENIZER": false, "PORT": false, "PWD": false,
	} {
		if secretName(name) != want {
			t.Errorf("secretName(%s) = %v", name, !want)
		}
	}
	for value, want := range map[string]bool{
		"postgres://shop:pa55@db/shop": true, "https://user@example.com/": false, "https://example.com/a:b@c": false,
		"-----BEGIN RSA PRIVATE KEY-----\nMIIE...": true, "AKIAIOSFODNN7EXAMPLE": true,
		"ghp_abcdefghijklmnopqrstuvwxyz0123456789": true, "xoxb-1234-5678-abcdefgh": true,
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc":         true,
		"Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZkdISUpLTE1O": true,
		"0123456789abcdef0123456789abcdef0123456789abcdef": false, // a digest: hex, no mixed case
		"info": false, "http://template-service:8005": false, "/usr/local/share/application/data": false,
	} {
		if got := secretValue(value) != ""; got != want {
			t.Errorf("secretValue(%q) = %v, want %v", value, got, want)
		}
	}
}

func TestDevPortRule(t *testing.T) {
	used := map[int]bool{9080: true, 9081: true}
	for _, tc := range []struct{ published, want int }{{8005, 9005}, {8080, 9082}, {65000, 10000}, {80, 1080}} {
		if got := devPort(tc.published, used); got != tc.want {
			t.Errorf("devPort(%d) = %d, want %d", tc.published, got, tc.want)
		}
		used[tc.want] = true
	}
}
