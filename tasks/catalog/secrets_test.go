package catalog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Both forms of secrets load: names only (values from outside), and names
// with dev defaults, which fill Secrets until package secrets resolves
// them for an environment.
func TestSecretForms(t *testing.T) {
	path := writeCatalog(t, `[project]
name = "shop"

[environments.demo]
ports = "dev"
host = "ssh://deploy@demo.example.internal"
dir = "/srv/deployment"
secrets_file = "private/demo.env"
secrets_command = ["./bin/get-secrets", "--env", "demo"]

[environments.qa]
ports = "dev"
host = "ssh://deploy@qa.example.internal"
dir = "/srv/deployment"
secrets_command = ["pass", "show", "maestro/qa"]

[[infrastructure]]
name = "db"
image = "postgres:16"
port = 5432
secrets = ["DB_PASSWORD"]

[[services]]
name = "web"
source = "app"
port = 8080
dev_port = 9080
secrets = [
  "SESSION_KEY",
  "API_TOKEN",
]

[[services]]
name = "api"
source = "app"
port = 8081
dev_port = 9081
secrets = { API_TOKEN = "dev-token", DB_PASSWORD = "dev-password" }

[[services]]
name = "plain"
source = "app"
port = 8082
dev_port = 9082
`)
	cat, err := catalog.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cat.File)
	web, _ := cat.Service("web")
	api, _ := cat.Service("api")
	db, _ := cat.Service("db")
	plain, _ := cat.Service("plain")

	if want := []string{"API_TOKEN", "SESSION_KEY"}; !reflect.DeepEqual(web.SecretNames, want) {
		t.Errorf("web SecretNames = %v, want %v (sorted)", web.SecretNames, want)
	}
	if len(web.SecretDefaults) != 0 || len(web.Secrets) != 0 {
		t.Errorf("the array form has no values: defaults %d, secrets %d", len(web.SecretDefaults), len(web.Secrets))
	}
	if want := []string{"API_TOKEN", "DB_PASSWORD"}; !reflect.DeepEqual(api.SecretNames, want) {
		t.Errorf("api SecretNames = %v, want %v", api.SecretNames, want)
	}
	if want := map[string]string{"API_TOKEN": "dev-token", "DB_PASSWORD": "dev-password"}; !reflect.DeepEqual(api.SecretDefaults, want) || !reflect.DeepEqual(api.Secrets, want) {
		t.Errorf("api defaults %v, secrets %v: want both to be the literals", api.SecretDefaults, api.Secrets)
	}
	// Secrets is a copy: resolving it must not rewrite the defaults.
	api.Secrets["API_TOKEN"] = "resolved"
	if api.SecretDefaults["API_TOKEN"] != "dev-token" {
		t.Error("Secrets and SecretDefaults share one map")
	}
	if !reflect.DeepEqual(db.SecretNames, []string{"DB_PASSWORD"}) {
		t.Errorf("infrastructure SecretNames = %v", db.SecretNames)
	}
	if plain.SecretNames != nil || plain.Secrets != nil {
		t.Errorf("a service without secrets has names %v, values %d", plain.SecretNames, len(plain.Secrets))
	}
	if cat.SecretsEnv != "" {
		t.Errorf("SecretsEnv = %q after Load, want empty (nothing resolved)", cat.SecretsEnv)
	}

	for _, tc := range []struct {
		svc  *catalog.Service
		name string
		line int
		key  string
	}{
		{web, "SESSION_KEY", 29, "services[0].secrets[0]"},
		{web, "API_TOKEN", 30, "services[0].secrets[1]"},
		{api, "DB_PASSWORD", 38, "services[1].secrets.DB_PASSWORD"},
		{db, "DB_PASSWORD", 21, "infrastructure[0].secrets[0]"},
	} {
		want := fmt.Sprintf("%s:%d: %s", cat.File, tc.line, tc.key)
		if got := cat.SecretAt(tc.svc, tc.name); got != want {
			t.Errorf("SecretAt(%s, %s) = %q, want %q", tc.svc.Name, tc.name, got, want)
		}
	}
	if got := cat.SecretAt(plain, "API_TOKEN"); got != "" {
		t.Errorf("SecretAt of an undeclared secret = %q", got)
	}

	demo, _ := cat.Env("demo")
	if want := filepath.Join(dir, "private", "demo.env"); demo.SecretsFile != want {
		t.Errorf("demo SecretsFile = %q, want %q (relative to the catalog)", demo.SecretsFile, want)
	}
	if want := []string{filepath.Join(dir, "bin", "get-secrets"), "--env", "demo"}; !reflect.DeepEqual(demo.SecretsCommand, want) {
		t.Errorf("demo SecretsCommand = %q, want %q (a program path is relative to the catalog)", demo.SecretsCommand, want)
	}
	qa, _ := cat.Env("qa")
	if want := filepath.Join(dir, ".maestro", "secrets", "qa.env"); qa.SecretsFile != want {
		t.Errorf("qa SecretsFile = %q, want the default %q", qa.SecretsFile, want)
	}
	if want := []string{"pass", "show", "maestro/qa"}; !reflect.DeepEqual(qa.SecretsCommand, want) {
		t.Errorf("qa SecretsCommand = %q, want %q (a program on PATH stays a name)", qa.SecretsCommand, want)
	}
	dev, _ := cat.Env("dev")
	if want := filepath.Join(dir, ".maestro", "secrets", "dev.env"); dev.SecretsFile != want || dev.SecretsCommand != nil {
		t.Errorf("implicit dev: SecretsFile %q (want %q), SecretsCommand %q (want none)", dev.SecretsFile, want, dev.SecretsCommand)
	}
}

// The repository's own catalog keeps a dev default for the gateway token
// and nothing more: no environment of it names a place holding values.
func TestRepoCatalogSecrets(t *testing.T) {
	cat, err := catalog.Load(filepath.Join("..", "..", "testdata", "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cat.All() {
		want := []string(nil)
		if s.Name == "maestro-gateway" {
			want = []string{"GATEWAY_API_TOKEN"}
		}
		if !reflect.DeepEqual(s.SecretNames, want) {
			t.Errorf("%s declares secrets %v, want %v", s.Name, s.SecretNames, want)
		}
	}
	gw, _ := cat.Service("maestro-gateway")
	if gw.SecretDefaults["GATEWAY_API_TOKEN"] != "change-me-dev-token" {
		t.Error("the gateway's dev default changed")
	}
	for name, e := range cat.Environments {
		if e.SecretsCommand != nil {
			t.Errorf("environment %s has a secrets_command %q", name, e.SecretsCommand)
		}
		if want := filepath.Join(filepath.Dir(cat.File), ".maestro", "secrets", name+".env"); e.SecretsFile != want {
			t.Errorf("environment %s reads secrets from %s, want the default %s", name, e.SecretsFile, want)
		}
	}
	// The default folder of the secrets files is never committed.
	ignore, err := os.ReadFile(filepath.Join("..", "..", ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ignore), "\n"), "/.maestro/secrets/") {
		t.Errorf(".gitignore does not ignore /.maestro/secrets/:\n%s", ignore)
	}
}
