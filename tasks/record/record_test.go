package record

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

func testCatalog() *catalog.Catalog {
	return &catalog.Catalog{File: "/x/services.toml", Project: catalog.Project{Name: "p", Network: "platform", DeployDir: "/x/d"},
		Services: []*catalog.Service{{Name: "a", Port: 80, DevPort: 9000, ProdPort: 8000, Written: catalog.Written{Env: map[string]string{"K": "v"}},
			Secrets: map[string]string{"T": "secret"}, Checks: []*catalog.Check{{Name: "h", Kind: "http", Line: 3, JSONField: "status"}}, Line: 1}}}
}

var key = []byte("0123456789abcdef0123456789abcdef")

// What may differ between environments, the build recipe and positions in
// the file are not configuration; everything else is, each under its
// catalog key, and a secret only as a digest.
func TestViews(t *testing.T) {
	base := Views(testCatalog(), key)
	a := base["a"]
	for k, want := range map[string]string{"name": "a", "port": "80", "env.K": "v", "checks.h.kind": "http", "checks.h.json_field": "status"} {
		if a[k] != want {
			t.Errorf("view[%q] = %q, want %q (view %v)", k, a[k], want, a)
		}
	}
	if d := a["secrets.T"]; !strings.HasPrefix(d, "hmac:") || strings.Contains(d, "secret") || d == Digest([]byte("other key........................"), "secret") {
		t.Errorf("secret recorded as %q, want a digest keyed by the folder's key", d)
	}
	same := testCatalog()
	same.Services[0].DevPort, same.Services[0].ProdPort, same.Services[0].Line = 1, 2, 99
	same.Services[0].ExtraPorts = map[string]int{"e2e": 5}
	same.Services[0].Checks[0].Line = 7
	same.Environments = map[string]*catalog.Environment{"demo": {Name: "demo"}}
	same.Services[0].Prebuild = []string{"go", "build"}
	same.Services[0].Source, same.Services[0].Title = "/elsewhere", "A"
	same.Services[0].SecretDefaults = map[string]string{"T": "dev default"}
	same.Services[0].SecretPlaces = map[string]catalog.Place{"T": {Line: 4, Key: "services[0].secrets.T"}}
	if c := Compare(base, Views(same, key)); len(c) != 0 {
		t.Errorf("ports, environments, lines, titles or build recipe are seen as changes: %v", c)
	}
	for name, tc := range map[string]struct {
		change func(c *catalog.Catalog)
		want   string
	}{
		"env":         {func(c *catalog.Catalog) { c.Services[0].Env["K"] = "w" }, `a: env.K "v" -> "w"`},
		"env added":   {func(c *catalog.Catalog) { c.Services[0].Env["N"] = "1" }, `a: env.N added ("1")`},
		"secret":      {func(c *catalog.Catalog) { c.Services[0].Secrets["T"] = "other" }, "a: secrets.T changed (value not shown)"},
		"port":        {func(c *catalog.Catalog) { c.Services[0].Port = 81 }, `a: port "80" -> "81"`},
		"replicas":    {func(c *catalog.Catalog) { c.Services[0].Replicas = 3 }, `a: replicas added ("3")`},
		"check":       {func(c *catalog.Catalog) { c.Services[0].Checks[0].Path = "/x" }, `a: checks.h.path added ("/x")`},
		"timeout":     {func(c *catalog.Catalog) { c.Services[0].Checks[0].Timeout = time.Second }, `a: checks.h.timeout added ("1s")`},
		"healthcheck": {func(c *catalog.Catalog) { c.Services[0].Healthcheck = []string{"/app", "-h"} }, `a: healthcheck added ("[\"/app\",\"-h\"]")`},
		"network":     {func(c *catalog.Catalog) { c.Project.Network = "n" }, `[project]: network "platform" -> "n"`},
		// The compose passthrough is configuration, key by key, per
		// environment too: a service whose command changed is replaced.
		"compose": {func(c *catalog.Catalog) {
			c.Services[0].Compose = map[string]any{"logging": map[string]any{"driver": "local"}}
		}, `a: compose.logging.driver added ("local")`},
		"compose list": {func(c *catalog.Catalog) { c.Services[0].Compose = map[string]any{"command": []any{"serve", int64(1)}} },
			`a: compose.command added ("[\"serve\",1]")`},
		"compose_env": {func(c *catalog.Catalog) {
			c.Services[0].ComposeEnv = map[string]map[string]any{"demo": {"user": "1000"}}
		}, `a: compose_env.demo.user added ("1000")`},
		"new service": {func(c *catalog.Catalog) { c.Services = append(c.Services, &catalog.Service{Name: "b"}) }, "b: added"},
		// Which secrets a service gets is configuration, in clear: names
		// are no secret.
		"secret names": {func(c *catalog.Catalog) { c.Services[0].SecretNames = []string{"T"} }, `a: secret_names added ("[\"T\"]")`},
	} {
		c := testCatalog()
		tc.change(c)
		changes := Compare(base, Views(c, key))
		if len(changes) != 1 || changes[0].String() != tc.want {
			t.Errorf("%s: changes %v, want one: %s", name, changes, tc.want)
		}
		for _, ch := range changes {
			if strings.Contains(ch.String(), "other") && ch.Secret() {
				t.Errorf("%s: a secret's value in %q", name, ch)
			}
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"JSONField": "json_field", "DependsOn": "depends_on", "Name": "name", "HealthTimeout": "health_timeout"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

// The key is made once, private, and read back the same afterwards.
func TestKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := Key(dir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("Key: %d bytes, %v", len(k1), err)
	}
	k2, err := Key(dir)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("second Key differs (%v)", err)
	}
	for p, want := range map[string]os.FileMode{filepath.Join(dir, StateDir): 0o700 | os.ModeDir, filepath.Join(dir, KeyFile): 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
}

func TestTestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rec := Test{Env: "dev", Project: "p", Images: map[string]string{"a": "sha256:1"},
		Config: map[string]View{"a": {"env.K": "v"}}, Passed: true, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := WriteTest(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTest(dir)
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("read %+v, %v; want %+v", got, err, rec)
	}
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(TestFile)))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v %v, want mode 0600", fi, err)
	}
}
