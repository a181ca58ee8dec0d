package catalog_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// realCatalog is the tests' copy of the sample catalog (testenv.SampleCatalog).
var realCatalog = filepath.Join("..", "..", "testdata", "services.toml")

func mustLoad(t *testing.T, path string) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return c
}

// headerLines returns the lines of each "[[header]]" in src, in order.
func headerLines(src, header string) []int {
	var out []int
	for i, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), header) {
			out = append(out, i+1)
		}
	}
	return out
}

func TestLoadRealCatalog(t *testing.T) {
	c := mustLoad(t, realCatalog)
	abs, _ := filepath.Abs(realCatalog)
	if c.File != abs {
		t.Errorf("File = %q, want %q", c.File, abs)
	}
	root := filepath.Dir(abs)
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.Project{Name: "maestro", DeployDir: filepath.Join(home, "deployment"), Network: "platform"}
	if c.Project != want {
		t.Errorf("Project = %+v, want %+v (~ expanded)", c.Project, want)
	}

	// The platform team's table: dev / prod host ports, container port = prod.
	ports := map[string][3]int{ // name -> port, dev, prod
		"quality-fabric":        {8000, 9000, 8000},
		"maestro-gateway":       {8080, 9080, 8080},
		"automation-service":    {8003, 9003, 8003},
		"k8s-execution-service": {8004, 9004, 8004},
		"template-service":      {8005, 9005, 8005},
	}
	if len(c.Services) != 5 || len(c.Infrastructure) != 1 {
		t.Fatalf("%d services and %d infrastructure, want 5 and 1", len(c.Services), len(c.Infrastructure))
	}
	src, _ := os.ReadFile(realCatalog)
	svcLines := headerLines(string(src), "[[services]]")
	for i, s := range c.Services {
		p, ok := ports[s.Name]
		if !ok {
			t.Errorf("unexpected service %q", s.Name)
			continue
		}
		if got := [3]int{s.Port, s.DevPort, s.ProdPort}; got != p {
			t.Errorf("%s: port/dev/prod = %v, want %v", s.Name, got, p)
		}
		if hp, ok := s.HostPort("dev"); !ok || hp != p[1] {
			t.Errorf("%s: HostPort(dev) = %d, %v", s.Name, hp, ok)
		}
		if s.Infra || s.Line != svcLines[i] {
			t.Errorf("%s: Infra %v Line %d, want false and %d", s.Name, s.Infra, s.Line, svcLines[i])
		}
		if !filepath.IsAbs(s.Source) || !strings.HasPrefix(s.Source, filepath.Join(root, "..", "examples")) {
			t.Errorf("%s: Source %q is not an absolute path under examples/", s.Name, s.Source)
		}
		if fi, err := os.Stat(filepath.Join(s.Source, s.Dockerfile)); err != nil || fi.IsDir() {
			t.Errorf("%s: no Dockerfile at %s/%s", s.Name, s.Source, s.Dockerfile)
		}
		if s.Dockerfile != "Dockerfile" || s.Health != "/health" || s.Replicas != 1 || s.Image != "" {
			t.Errorf("%s: defaults Dockerfile %q Health %q Replicas %d Image %q", s.Name, s.Dockerfile, s.Health, s.Replicas, s.Image)
		}
		if !reflect.DeepEqual(s.Healthcheck, []string{"/app", "-healthcheck"}) {
			t.Errorf("%s: Healthcheck %q", s.Name, s.Healthcheck)
		}
		if len(s.Prebuild) == 0 || s.Prebuild[0] != "go" || len(s.PrebuildInputs) != 2 {
			t.Errorf("%s: Prebuild %q inputs %q", s.Name, s.Prebuild, s.PrebuildInputs)
		}
		for _, in := range s.PrebuildInputs {
			if !filepath.IsAbs(in) {
				t.Errorf("%s: prebuild input %q not absolute", s.Name, in)
			}
		}
		if s.Env["SERVICE_NAME"] != s.Name || s.PrebuildEnv["CGO_ENABLED"] != "0" {
			t.Errorf("%s: Env %v PrebuildEnv %v", s.Name, s.Env, s.PrebuildEnv)
		}
		if got := c.ImageRef(s); got != "maestro/"+s.Name+":latest" {
			t.Errorf("%s: ImageRef %q", s.Name, got)
		}
		if len(s.Checks) == 0 || s.Checks[0].Name != "health" {
			t.Errorf("%s: first check should be health, got %v", s.Name, s.Checks)
		}
	}

	db := c.Infrastructure[0]
	if db.Name != "state-store" || !db.Infra || db.Port != 6380 || db.DevPort != 0 || db.ProdPort != 0 ||
		db.Title != "State Store" || !reflect.DeepEqual(db.Volumes, []catalog.Volume{{Spec: "state-data:/data"}}) {
		t.Errorf("infrastructure: %+v", db)
	}
	if _, published := db.HostPort("dev"); published {
		t.Error("state-store should not be published")
	}
	if got, ok := c.Service("state-store"); !ok || got != db {
		t.Error(`Service("state-store") did not find the infrastructure entry`)
	}
	if all := c.All(); len(all) != 6 || all[0] != db {
		t.Errorf("All() = %d entries starting with %s, want 6 starting with state-store", len(all), all[0].Name)
	}

	gw, _ := c.Service("maestro-gateway")
	if !reflect.DeepEqual(gw.DependsOn, []string{"quality-fabric", "automation-service", "k8s-execution-service", "template-service"}) {
		t.Errorf("gateway DependsOn %q", gw.DependsOn)
	}
	if gw.Secrets["GATEWAY_API_TOKEN"] == "" || gw.Env["GATEWAY_API_TOKEN"] != "" {
		t.Errorf("gateway secret should be in Secrets only")
	}
	if len(gw.Checks) != 5 {
		t.Errorf("gateway has %d checks, want 5", len(gw.Checks))
	}

	// Checks: defaults filled in, explicit values kept.
	cars, _ := c.Service("automation-service")
	health := cars.Checks[0]
	wantHealth := catalog.Check{Name: "health", Kind: catalog.CheckHTTP, Path: "/health", Status: 200,
		JSONField: "status", JSONEquals: "ok", Timeout: 2 * time.Second, Retries: 2, Line: health.Line}
	if *health != wantHealth {
		t.Errorf("automation-service health check = %+v, want %+v", *health, wantHealth)
	}
	reach := cars.Checks[1]
	if reach.Kind != catalog.CheckNetwork || reach.Path != "/call/template-service" || reach.Contains != `"ok":true` ||
		reach.Status != 200 || reach.Retries != 2 || reach.Timeout != 2*time.Second {
		t.Errorf("automation-service network check = %+v", *reach)
	}
	checkLines := headerLines(string(src), "[[services.checks]]")
	tmpl, _ := c.Service("template-service")
	if tmpl.Checks[0].Line != checkLines[0] || tmpl.Checks[1].Line != checkLines[1] || health.Line != checkLines[2] {
		t.Errorf("check lines %d %d %d, want %v...", tmpl.Checks[0].Line, tmpl.Checks[1].Line, health.Line, checkLines[:3])
	}

	if len(c.Environments) != 2 {
		t.Errorf("environments %v, want dev and demo", c.Environments)
	}
	dev, err := c.Env("dev")
	if err != nil {
		t.Fatal(err)
	}
	wantDev := catalog.Environment{Name: "dev", Ports: "dev", Dir: c.Project.DeployDir, Engine: catalog.EngineCompose,
		Bind: "127.0.0.1", KeepReleases: 5, HealthTimeout: 2 * time.Minute, DrainTimeout: catalog.DefaultDrainTimeout, Line: headerLines(string(src), "[environments.dev]")[0],
		SecretsFile: filepath.Join(filepath.Dir(c.File), ".maestro", "secrets", "dev.env")}
	if !reflect.DeepEqual(*dev, wantDev) || dev.Remote() {
		t.Errorf("dev = %+v, want %+v", *dev, wantDev)
	}
	demo, err := c.Env("demo")
	if err != nil {
		t.Fatal(err)
	}
	wantDemo := catalog.Environment{Name: "demo", Ports: "prod", Host: "ssh://ec2-user@demo.example.internal",
		Dir: "/home/ec2-user/deployment", Engine: catalog.EngineCompose, Bind: "", KeepReleases: 5,
		KnownHosts: filepath.Join(home, ".ssh", "known_hosts"), HealthTimeout: 3 * time.Minute,
		DrainTimeout: catalog.DefaultDrainTimeout, Line: headerLines(string(src), "[environments.demo]")[0],
		SecretsFile: filepath.Join(filepath.Dir(c.File), ".maestro", "secrets", "demo.env")}
	if !reflect.DeepEqual(*demo, wantDemo) || !demo.Remote() {
		t.Errorf("demo = %+v, want %+v", *demo, wantDemo)
	}
	if _, err := c.Env("prod"); err == nil || !strings.Contains(err.Error(), "known environments: demo, dev") {
		t.Errorf(`Env("prod") error = %v, want it to list demo, dev`, err)
	}
}

// writeCatalog puts a catalog and a buildable source folder "app" into a
// fresh folder and returns the catalog's path.
func writeCatalog(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadDefaults(t *testing.T) {
	path := writeCatalog(t, `
[project]
name = "shop"
deploy_dir = "out"

[environments.staging]
ports = "metrics"
host = "ssh://deploy@staging.example.internal:2222"
dir = "/srv/shop/"
engine = "swarm"

[environments.edge]
ports = "metrics"
engine = "swarm"
endpoint_mode = "dnsrr"
publish_mode = "host"

[[infrastructure]]
name = "cache"
image = "redis:7"
port = 6379
ports = { metrics = 9121 }

[[services]]
name = "web"
source = "app"
port = 8080
dev_port = 9080
ports = { metrics = 9100 }
prebuild = ["true"]
replicas = 3

  [[services.checks]]
  kind = "network"
  path = "/ready"
  status = 204
  timeout = "500ms"
  retries = 0
`)
	c := mustLoad(t, path)
	dir := filepath.Dir(path)
	if c.Project.DeployDir != filepath.Join(dir, "out") || c.Project.Network != "platform" {
		t.Errorf("Project = %+v: deploy_dir relative to the catalog, network default platform", c.Project)
	}
	dev := c.Environments["dev"]
	if dev == nil {
		t.Fatal("no dev environment added by default")
	}
	if dev.Ports != "dev" || dev.Bind != "127.0.0.1" || dev.Dir != c.Project.DeployDir || dev.Engine != catalog.EngineCompose ||
		dev.HealthTimeout != 2*time.Minute || dev.DrainTimeout != catalog.DefaultDrainTimeout || dev.KeepReleases != 5 || dev.Remote() || dev.Line != 0 ||
		dev.EndpointMode != "" || dev.PublishMode != "" {
		t.Errorf("default dev = %+v", *dev)
	}
	st := c.Environments["staging"]
	home, _ := os.UserHomeDir()
	if st.Dir != "/srv/shop" || st.Engine != catalog.EngineSwarm || st.Bind != "" ||
		st.KnownHosts != filepath.Join(home, ".ssh", "known_hosts") || !st.Remote() {
		t.Errorf("staging = %+v", *st)
	}
	// Swarm's own defaults, and a swarm environment that needs no IPVS.
	if st.EndpointMode != catalog.EndpointVIP || st.PublishMode != catalog.PublishIngress {
		t.Errorf("staging modes = %q, %q, want vip, ingress", st.EndpointMode, st.PublishMode)
	}
	if edge := c.Environments["edge"]; edge.EndpointMode != catalog.EndpointDNSRR || edge.PublishMode != catalog.PublishHost {
		t.Errorf("edge modes = %q, %q, want dnsrr, host", edge.EndpointMode, edge.PublishMode)
	}

	web := c.Services[0]
	if web.Title != "web" || web.Dockerfile != "Dockerfile" || web.Source != filepath.Join(dir, "app") ||
		web.Health != "/health" || web.Replicas != 3 || web.ProdPort != 0 {
		t.Errorf("web = %+v", *web)
	}
	if !reflect.DeepEqual(web.PrebuildInputs, []string{web.Source}) {
		t.Errorf("PrebuildInputs = %q, want the source folder by default", web.PrebuildInputs)
	}
	if p, ok := web.HostPort("metrics"); !ok || p != 9100 {
		t.Errorf("HostPort(metrics) = %d, %v", p, ok)
	}
	if _, ok := web.HostPort("prod"); ok {
		t.Error("HostPort(prod) reported a port that is not set")
	}
	ck := *web.Checks[0]
	want := catalog.Check{Name: "network /ready", Kind: catalog.CheckNetwork, Path: "/ready", Status: 204,
		Timeout: 500 * time.Millisecond, Retries: 0, Line: ck.Line}
	if ck != want || ck.Line == 0 {
		t.Errorf("check = %+v, want %+v", ck, want)
	}
	cache := c.Infrastructure[0]
	if cache.Source != "" || cache.Dockerfile != "" || c.ImageRef(cache) != "redis:7" || c.ImageRef(web) != "shop/web:latest" {
		t.Errorf("image entry: Source %q Dockerfile %q ImageRef %q", cache.Source, cache.Dockerfile, c.ImageRef(cache))
	}
}

// A clash in a port column matters only where that column is published.
func TestPortClashOnlyInEnvironmentsThatPublishIt(t *testing.T) {
	const services = `
[project]
name = "shop"

[[services]]
name = "web"
source = "app"
port = 8080
dev_port = 9080
prod_port = 8080

[[services]]
name = "api"
source = "app"
port = 8081
dev_port = 9081
prod_port = 8080
`
	mustLoad(t, writeCatalog(t, services)) // only dev: the prod clash is harmless

	path := writeCatalog(t, services+`
[environments.demo]
ports = "prod"
host = "ssh://deploy@demo.example.internal"
dir = "/srv/deployment"

[environments.qa]
ports = "prod"
host = "ssh://deploy@qa.example.internal"
dir = "/srv/deployment"
`)
	errs := loadErrors(t, path)
	checkShape(t, path, errs)
	var envs []string
	for _, e := range errs {
		if e.Key != "services[1].prod_port" || e.Line != 17 || !strings.Contains(e.Msg, "host port 8080 is used twice") {
			t.Errorf("unexpected error %v", e)
		}
		envs = append(envs, e.Msg[strings.Index(e.Msg, "environment"):])
	}
	if len(envs) != 2 || !strings.Contains(envs[0], `"demo"`) || !strings.Contains(envs[1], `"qa"`) {
		t.Errorf("want the clash once for demo and once for qa, got %q", envs)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := catalog.Load(path)
	var e *catalog.Error
	if !errors.As(err, &e) || e.File != path || !strings.Contains(e.Msg, "not found") || !strings.Contains(e.Hint, "DEPLOY_CATALOG") {
		t.Fatalf("Load(missing) = %v, want a catalog.Error naming the file with a hint", err)
	}
}

// Secret values must not leak through error messages, whatever is wrong
// with them.
func TestErrorsNeverPrintSecrets(t *testing.T) {
	const secret = "hunter2-sekrit"
	for name, body := range map[string]string{
		"nul":                `secrets = { TOKEN = "` + secret + `\u0000" }`,
		"both":               "env = { TOKEN = \"x\" }\nsecrets = { TOKEN = \"" + secret + "\" }",
		"bad name":           `secrets = { "BAD-NAME" = "` + secret + `" }`,
		"wrong type":         `secrets = ["` + secret + `"]`,
		"value in the names": `secrets = ["TOKEN=` + secret + `"]`,
		"not a name":         `secrets = ["TOKEN", 42, "` + secret + `"]`,
	} {
		path := writeCatalog(t, "[project]\nname = \"shop\"\n[[services]]\nname = \"web\"\nsource = \"app\"\nport = 1\ndev_port = 2\n"+body+"\n")
		errs := loadErrors(t, path)
		checkShape(t, path, errs)
		if strings.Contains(errs.Error(), secret) {
			t.Errorf("%s: error prints the secret: %v", name, errs)
		}
	}
}

// Load's answer does not depend on the working directory: relative paths
// are relative to the catalog file.
func TestLoadRelativeToCatalogNotCwd(t *testing.T) {
	path := writeCatalog(t, "[project]\nname = \"shop\"\n[[services]]\nname = \"web\"\nsource = \"app\"\nport = 1\ndev_port = 2\n")
	t.Chdir(t.TempDir())
	c := mustLoad(t, path)
	if c.Services[0].Source != filepath.Join(filepath.Dir(path), "app") {
		t.Errorf("Source = %q", c.Services[0].Source)
	}
}

// What the environment checks must let through: a loopback tcp:// host in
// plain text (a local dind), a remote tcp:// host with TLS files, a unix://
// socket with its path, and one folder on two different hosts or users.
func TestLoadEnvironmentsAccepted(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.pem")
	path := writeCatalog(t, `
[project]
name = "shop"

[environments.dind]
ports = "prod"
host = "tcp://127.0.0.1:2375"
dir = "/srv/deployment"

[environments.dind6]
ports = "prod"
host = "tcp://[::1]:2375"
dir = "/srv/deployment"

[environments.secure]
ports = "prod"
host = "tcp://demo.example.internal:2376"
dir = "/srv/deployment"
tls_ca = "tls/ca.pem"
tls_cert = "tls/cert.pem"
tls_key = "`+key+`"

[environments.sock]
ports = "prod"
host = "unix:///var/run/docker.sock"
dir = "/home/deploy/deployment"

[environments.demo]
ports = "prod"
host = "ssh://deploy@demo.example.internal:2222"
dir = "/home/deploy/deployment"
known_hosts = "keys/known hosts %h"

[environments.demo-other-user]
ports = "prod"
host = "ssh://ops@demo.example.internal:2222"
dir = "/home/deploy/deployment"

[[services]]
name = "web"
source = "app"
port = 8080
dev_port = 9080
prod_port = 8080
`)
	dir := filepath.Dir(path)
	for _, f := range []string{filepath.Join(dir, "tls", "ca.pem"), filepath.Join(dir, "tls", "cert.pem"), key} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("pem\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := mustLoad(t, path)
	sec := c.Environments["secure"]
	if sec.TLSCA != filepath.Join(dir, "tls", "ca.pem") || sec.TLSCert != filepath.Join(dir, "tls", "cert.pem") || sec.TLSKey != key || !sec.TLS() {
		t.Errorf("secure TLS files = %q, %q, %q: want absolute paths, relative ones taken from the catalog's folder", sec.TLSCA, sec.TLSCert, sec.TLSKey)
	}
	for _, n := range []string{"dind", "dind6", "sock", "demo", "dev"} {
		if e := c.Environments[n]; e.TLS() || e.TLSCA != "" || e.TLSCert != "" || e.TLSKey != "" {
			t.Errorf("%s has TLS files %+v", n, *e)
		}
	}
	if got := c.Environments["demo"].KnownHosts; got != filepath.Join(dir, "keys", "known hosts %h") {
		t.Errorf("known_hosts = %q: a space or %% is the ssh flags' business, not refused", got)
	}
}

// A host's password never reaches an error message, however the rest of
// the URL is malformed.
func TestHostPasswordNeverPrinted(t *testing.T) {
	const pw = "hunter2-sekrit"
	for _, host := range []string{
		"ssh://deploy:" + pw + "@demo.example.internal",
		"tcp://admin:" + pw + "@demo.example.internal:2376/path?q=1#f",
		"ssh://deploy:" + pw + "/with/slashes@demo.example.internal",
		"ssh://deploy:" + pw + "@at@demo.example.internal",
		"ssh://deploy:%zz" + pw + "@demo.example.internal",
		"ssh://deploy:" + pw + "@demo.example.internal:22:33",
		"deploy:" + pw + "@demo.example.internal",
		"unix://u:" + pw + "@/var/run/docker.sock",
	} {
		path := writeCatalog(t, fmt.Sprintf("[project]\nname = \"shop\"\n[environments.demo]\nports = \"prod\"\nhost = %q\ndir = \"/srv/deployment\"\n"+
			"[[services]]\nname = \"web\"\nsource = \"app\"\nport = 1\ndev_port = 2\nprod_port = 3\n", host))
		errs := loadErrors(t, path)
		checkShape(t, path, errs)
		if strings.Contains(errs.Error(), pw) {
			t.Errorf("%s: error prints the password: %v", host, errs)
		}
		if len(errs) != 1 || errs[0].Key != "environments.demo.host" || !strings.Contains(errs[0].Msg, "holds a password") {
			t.Errorf("%s: want one password error on the host, got:\n%s", host, list(errs))
		}
	}
}

// TestPassthroughCatalog loads the table forms and the compose passthrough
// and checks what they become: bind mounts absolute, per-environment keys
// replacing the service's, and all of it part of the configuration.
func TestPassthroughCatalog(t *testing.T) {
	file := filepath.Join("testdata", "good", "passthrough.toml")
	c := mustLoad(t, file)
	web, _ := c.Service("web")
	dir, _ := filepath.Abs(filepath.Dir(file))
	wantVols := []catalog.Volume{
		{Spec: filepath.Join(dir, "conf") + ":/etc/web:ro"},
		{Spec: "cache:/cache"},
		{Long: map[string]any{"type": "tmpfs", "target": "/tmp", "tmpfs": map[string]any{"size": int64(65536)}}},
	}
	if !reflect.DeepEqual(web.Volumes, wantVols) {
		t.Errorf("Volumes = %#v, want %#v", web.Volumes, wantVols)
	}
	if got := []string{web.Volumes[0].Named(), web.Volumes[1].Named(), web.Volumes[2].Named()}; !reflect.DeepEqual(got, []string{"", "cache", ""}) {
		t.Errorf("Named() = %q", got)
	}
	if !reflect.DeepEqual(web.Healthcheck, []string{"wget -qO- http://localhost:8080/health || exit 1"}) || web.HealthcheckOptions["interval"] != "10s" {
		t.Errorf("Healthcheck %q, options %v", web.Healthcheck, web.HealthcheckOptions)
	}
	if !reflect.DeepEqual(web.DependsOn, []string{"db"}) || web.DependsOnConditions["db"] != "service_started" {
		t.Errorf("DependsOn %q, conditions %v", web.DependsOn, web.DependsOnConditions)
	}
	// Dotted and dashed names, which containers take (Elasticsearch's
	// discovery.type), are accepted in env.
	if !reflect.DeepEqual(web.Env, map[string]string{"LOG_LEVEL": "info", "discovery.type": "single-node", "log-format": "json"}) {
		t.Errorf("Env = %v", web.Env)
	}
	if web.BuildArgs["VERSION"] != "1.2" || web.BuildTarget != "runtime" || web.Labels["com.example.team"] != "payments" {
		t.Errorf("BuildArgs %v BuildTarget %q Labels %v", web.BuildArgs, web.BuildTarget, web.Labels)
	}
	dev, demo := web.ComposeFor("dev"), web.ComposeFor("demo")
	if !reflect.DeepEqual(dev["command"], []any{"serve", "--port", "8080"}) || dev["user"] != "1000" {
		t.Errorf("ComposeFor(dev) = %v", dev)
	}
	if !reflect.DeepEqual(demo["logging"], map[string]any{"driver": "local"}) || !reflect.DeepEqual(demo["command"], dev["command"]) {
		t.Errorf("ComposeFor(demo) = %v: compose_env.demo must replace logging and keep the rest", demo)
	}
	if web.Compose["logging"].(map[string]any)["driver"] != "json-file" {
		t.Error("ComposeFor changed the service's own compose table")
	}
}

// A misspelled key comes before the error it causes, which names it,
// although that error is pinned to an earlier line (the entry's start).
func TestTypoBeforeItsConsequence(t *testing.T) {
	_, err := catalog.Load(filepath.Join("testdata", "bad", "unknown-service-key.toml"))
	var es catalog.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want catalog.Errors, got %v", err)
	}
	typo, follow := -1, -1
	for i, e := range es {
		switch {
		case e.Key == "services[1].dev_prot":
			typo = i
		case e.Key == "services[1]" && strings.Contains(e.Msg, "has no dev_port"):
			follow = i
			if !strings.Contains(e.Hint, `misspelled "dev_prot" on line 18`) {
				t.Errorf("the consequence does not name its cause: %v", e)
			}
		case e.Key == "services[2].dev_prot", e.Key == "services[2]":
		default:
			t.Errorf("unexpected error %v", e)
		}
	}
	if typo < 0 || follow != typo+1 {
		t.Errorf("want the misspelling right before what it causes:\n%v", err)
	}
}

// The product's own services.toml, the one the README's first command
// deploys, loads without a problem. Nothing else about it is asserted: it
// is the user's to edit, and the tests read their own copy.
func TestProductCatalogLoads(t *testing.T) {
	if _, err := catalog.Load(filepath.Join("..", "..", "services.toml")); err != nil {
		t.Fatal(err)
	}
}
