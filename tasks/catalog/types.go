// Package catalog loads and validates services.toml, the one file that
// describes every service of the platform, its ports, health checks and the
// environments it is deployed to.
package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Catalog is a validated services.toml. Paths in it are absolute.
type Catalog struct {
	// File is the absolute path of the catalog file; every relative path in
	// it is resolved against its folder.
	File    string
	Project Project
	// Environments by name; "dev" always exists after Load.
	Environments map[string]*Environment
	// Services are the application services, in file order.
	Services []*Service
	// Infrastructure are the shared backing services, in file order. They
	// have the same shape as services and are rendered under infrastructure/.
	Infrastructure []*Service
	// SecretsEnv is the environment whose values the services' Secrets
	// hold, set by secrets.Resolve. It is "" after Load, when Secrets hold
	// the catalog's dev defaults, which only a local environment may use.
	// render.Render checks it, so that neither a dev default nor one
	// environment's secret reaches another environment: while it is "",
	// it refuses a remote environment; once set, any other environment.
	SecretsEnv string
}

// Project holds settings shared by every environment.
type Project struct {
	// Name is the compose project name: the prefix of containers, networks
	// and volumes, and the value of the com.docker.compose.project label.
	Name string
	// DeployDir is the local deployment folder (default ~/deployment),
	// with ~ expanded.
	DeployDir string
	// Network is the name of the stack's shared network (default "platform").
	Network string
}

// Engine kinds an environment can deploy to.
const (
	EngineCompose = "compose"
	EngineSwarm   = "swarm"
)

// EngineKind is what an engine kind means for the files rendered for it:
// said here, beside the kinds, so that render asks the kind rather than
// comparing names. What it means for running them is package runtime's.
type EngineKind struct {
	// Stack: the environment runs a stack file through docker stack
	// deploy. Render writes it, its services' secrets as swarm secrets and
	// their replicas and placement in their config hashes; test-all.sh
	// counts a stack service's replicas instead of looking at containers.
	Stack bool
}

// EngineKinds are the engine kinds by name.
var EngineKinds = map[string]EngineKind{
	EngineCompose: {},
	EngineSwarm:   {Stack: true},
}

// Kind is what the environment's engine kind means for its files.
func (e *Environment) Kind() EngineKind { return EngineKinds[e.Engine] }

// Endpoint modes of a swarm environment (Environment.EndpointMode).
const (
	// EndpointVIP gives each service one virtual IP that the kernel's IPVS
	// balances over its tasks: swarm's default, and it needs IPVS.
	EndpointVIP = "vip"
	// EndpointDNSRR makes a service's DNS name answer with the addresses of
	// its running tasks, in turn: no IPVS needed, and what an external load
	// balancer in front of the nodes expects.
	EndpointDNSRR = "dnsrr"
)

// Publish modes of a swarm environment (Environment.PublishMode).
const (
	// PublishIngress publishes a port on every node through swarm's routing
	// mesh (which needs IPVS), whichever node runs the task.
	PublishIngress = "ingress"
	// PublishHost binds the port on the node that runs the task only: one
	// task of a published service per node, no IPVS needed.
	PublishHost = "host"
)

// Environment is one place the stack runs: the local engine (dev) or a
// remote host (demo).
type Environment struct {
	Name string
	// Ports names the port column used for published ports: "dev", "prod"
	// or a key of a service's extra ports table.
	Ports string
	// Host is the Docker host: "" for the local engine (DOCKER_HOST or the
	// default socket), or ssh://user@host[:port], unix:///path, tcp://host:port.
	// Load refuses a password, query, fragment or path in it, and a tcp://
	// host without TLS files unless it is a loopback address.
	Host string
	// Dir is the deployment folder on that host, absolute and clean. For a
	// local environment it defaults to Project.DeployDir. Load refuses "/",
	// a folder one level below it, system folders (/etc, /usr, /var/lib/docker,
	// /root...) and ".." elements: the release tool bind-mounts it
	// read-write into a container. No two environments share one folder
	// of one engine.
	Dir string
	// Engine is EngineCompose (default) or EngineSwarm.
	Engine string
	// Bind is the host address published ports bind to ("" = all addresses).
	Bind string
	// KeepReleases is how many releases promote keeps on the host (default 5).
	KeepReleases int
	// KnownHosts is the known_hosts file used to check an ssh host's key
	// (default ~/.ssh/known_hosts).
	KnownHosts string
	// Identity is an ssh private key file ("" = ssh's defaults).
	Identity string
	// TLSCA, TLSCert and TLSKey are the absolute paths of the PEM files a
	// tcp:// host is reached with over TLS: the CA the daemon's certificate
	// must be signed by, and this client's certificate and key (the
	// daemon runs with --tlsverify). All three or none; they exist when
	// Load returns, and only a tcp:// host has them. Pass them to
	// engine.Connect with engine.WithTLS(TLSCA, TLSCert, TLSKey).
	TLSCA, TLSCert, TLSKey string
	// HealthTimeout bounds how long up and promote wait for health
	// (DefaultHealthTimeout when the catalog does not say; see
	// HealthDeadline for catalogs built in code).
	HealthTimeout time.Duration
	// DrainTimeout bounds how long promote lets the requests in flight to
	// a replaced container finish, once the proxy sends it no new ones,
	// before stopping it (DefaultDrainTimeout when the catalog does not
	// say; see DrainDeadline).
	DrainTimeout time.Duration
	// EndpointMode is how services find each other inside a swarm stack's
	// network: EndpointVIP (default) or EndpointDNSRR. Empty for compose
	// environments, where it does not apply.
	EndpointMode string
	// PublishMode is how a swarm stack publishes ports: PublishIngress
	// (default) or PublishHost. Empty for compose environments.
	PublishMode string
	// Nodes are the swarm's other nodes (workers, further managers), as
	// ssh://user@host[:port] reached with KnownHosts and Identity: promote
	// sends each the images it lacks. Host is the manager it deploys
	// through. Swarm environments only (see nodes.go).
	Nodes []string
	// SecretsFile is the absolute path of the dotenv file secret values
	// are read from for this environment (secrets_file, default
	// .maestro/secrets/<name>.env beside the catalog). It may be missing;
	// when present, neither group nor others may read or write it (see
	// package secrets).
	SecretsFile string
	// SecretsCommand is a program and its arguments (never a shell
	// string) whose standard output, in dotenv form, gives the secrets
	// that neither the process environment nor SecretsFile have; nil when
	// the catalog names none. A program path holding a '/' is made
	// absolute (a relative one is taken from the catalog's folder); a bare
	// name is looked up in PATH when it runs.
	SecretsCommand []string
	// Line is the line of the [environments.NAME] header.
	Line int
}

// DefaultHealthTimeout is how long up and promote wait for health when an
// environment does not say.
const DefaultHealthTimeout = 2 * time.Minute

// HealthDeadline is HealthTimeout, or DefaultHealthTimeout when it is not
// set (a catalog built in code).
func (e *Environment) HealthDeadline() time.Duration {
	if e.HealthTimeout > 0 {
		return e.HealthTimeout
	}
	return DefaultHealthTimeout
}

// DefaultDrainTimeout is how long promote lets a replaced container's
// requests in flight finish when an environment does not say; a request
// still running then meets the container's own graceful stop.
const DefaultDrainTimeout = 30 * time.Second

// DrainDeadline is DrainTimeout, or DefaultDrainTimeout when it is not set
// (a catalog built in code).
func (e *Environment) DrainDeadline() time.Duration {
	if e.DrainTimeout > 0 {
		return e.DrainTimeout
	}
	return DefaultDrainTimeout
}

// Remote reports whether the environment lives on another Docker host.
func (e *Environment) Remote() bool { return e.Host != "" }

// TLS reports whether the environment's engine is reached over TLS (its
// TLSCA, TLSCert and TLSKey are set).
func (e *Environment) TLS() bool { return e.TLSCA != "" }

// Service is one deployable unit: an application service or a piece of
// shared infrastructure.
type Service struct {
	// The view tags name each field as the promotion gate and plan report
	// it, or leave it out ("-") of a service's configuration: what may
	// differ between environments (ports), what the image ID covers (the
	// build recipe) and what does not change how it runs. A new field is
	// part of the configuration unless tagged otherwise.

	Name string `view:"name"`
	// Source is the absolute build context folder ("" when Image is set).
	Source string `view:"-"`
	// Port is the port the container listens on.
	Port int `view:"port"`
	// DevPort and ProdPort are the published host ports of the dev and prod
	// columns (0 = not published).
	DevPort, ProdPort int `view:"-"`
	// ExtraPorts are further port columns, by column name.
	ExtraPorts map[string]int `view:"-"`
	// Healthcheck is the in-container health command; empty = none, and
	// health is then probed over HTTP on the published port. In the array
	// form (healthcheck = ["/app", "-healthcheck"]) it is the exec form's
	// arguments, rendered with the tool's timings (ExecHealthcheck).
	// In the table form it is what the container runs, for those who only
	// ask whether there is one: the arguments after "CMD", or the one
	// shell line of "CMD-SHELL" (or of a test written as a string); empty
	// when the test is "NONE", disabled or left to the image.
	Healthcheck []string `view:"healthcheck"`
	// HealthcheckOptions is the table form of healthcheck: compose's
	// healthcheck keys (test, interval, timeout, retries, start_period,
	// disable) as written, rendered as they are. nil for the array form.
	HealthcheckOptions map[string]any `view:"healthcheck_options"`
	// DependsOn names services or infrastructure this one needs started
	// first: healthy when the dependency has a healthcheck, else started,
	// unless DependsOnConditions says otherwise.
	DependsOn []string `view:"depends_on"`
	// DependsOnConditions are the compose conditions written in the table
	// form of depends_on (depends_on = { db = "service_started" }), by
	// dependency: service_started, service_healthy or
	// service_completed_successfully.
	DependsOnConditions map[string]string `view:"depends_on_conditions"`
	// Compose holds the compose service keys the catalog does not model
	// (command, entrypoint, user, extra_hosts, logging, deploy resources...),
	// as written under compose = {...}, with TOML's types: strings, int64,
	// float64, bool, []any and map[string]any. They are rendered unchanged
	// into every compose and stack file that holds the service; values are
	// literal ('$' is not interpolated). Use ComposeFor for an environment.
	Compose map[string]any `view:"compose"`
	// ComposeEnv holds, by environment name, compose keys that replace
	// those of Compose in that environment (compose_env = { demo = {...} }).
	ComposeEnv map[string]map[string]any `view:"compose_env"`
	// Secrets are the values of the service's secrets: environment values
	// that are never printed and never put in a compose file, only in the
	// 0600 .env. Load fills it with SecretDefaults (what a local
	// environment falls back on); secrets.Resolve replaces it with the
	// values for one environment, taken from outside the catalog, and
	// sets Catalog.SecretsEnv. Recorded as keyed digests only.
	Secrets map[string]string `view:"secrets,secret"`
	// SecretNames are the names of every secret the service declares,
	// sorted: the whole of `secrets = ["NAME"]`, or the keys of
	// `secrets = { NAME = "dev default" }`. Which secrets a service gets is
	// part of its configuration; their values are not.
	SecretNames []string `view:"secret_names"`
	// SecretDefaults are the literal values of the table form: dev
	// defaults, used only by local environments when nothing outside the
	// catalog gives a value (nil or empty for the array form). They are
	// not configuration: the catalog is committed, so they are no secret,
	// and a remote environment never uses them.
	SecretDefaults map[string]string `view:"-"`
	// SecretPlaces are where each secret name is declared, for messages
	// (see Catalog.SecretAt).
	SecretPlaces map[string]Place `view:"-"`
	// PrebuildInputs are absolute files or folders whose content decides
	// whether Prebuild must run again (default: Source).
	PrebuildInputs []string `view:"-"`
	// Replicas for swarm environments (default 1).
	Replicas int `view:"replicas"`
	// MaxReplicasPerNode caps how many of its replicas one swarm node runs
	// (0 = no cap): 1 spreads them over as many nodes. Swarm only.
	MaxReplicasPerNode int `view:"max_replicas_per_node"`
	// Volumes are the service's mounts: named volumes, bind mounts (their
	// host paths absolute) and anonymous volumes, in the order written.
	Volumes []Volume `view:"volumes"`
	// Checks are what testAll runs for this service, besides its health.
	Checks []*Check `view:"checks"`
	// Written are the keys the model holds as the file writes them.
	Written
	// Settings are the compose keys the catalog carries as written.
	Settings
	// Infra is true for entries of [[infrastructure]].
	Infra bool `view:"infrastructure"`
	// Line is the line of the [[services]] / [[infrastructure]] header.
	Line int `view:"-"`
}

// Place is where something is written in the catalog file.
type Place struct {
	// Line is 1-based (0 = unknown).
	Line int
	// Key is the dotted path, as in Error.Key: services[4].secrets.NAME.
	Key string
}

// HostPort returns the published host port of the service in the given
// port column, and whether the column exists for it.
func (s *Service) HostPort(column string) (int, bool) {
	switch column {
	case "dev":
		return s.DevPort, s.DevPort != 0
	case "prod":
		return s.ProdPort, s.ProdPort != 0
	}
	p, ok := s.ExtraPorts[column]
	return p, ok && p != 0
}

// Check kinds.
const (
	// CheckHTTP is an HTTP GET from the host to the service's published port.
	CheckHTTP = "http"
	// CheckNetwork is an HTTP GET from inside the stack's network, by the
	// service's DNS name: what another service would see.
	CheckNetwork = "network"
)

// Check is one testAll probe of a service.
type Check struct {
	// Name is unique within the service.
	Name string
	// Kind is CheckHTTP or CheckNetwork.
	Kind string
	// Path is the request path (default: the service's health path).
	Path string
	// Status is the expected HTTP status (default 200).
	Status int
	// Contains, when set, must occur in the response body.
	Contains string
	// JSONField and JSONEquals, when set, require the response to be a JSON
	// object whose field (dotted path) equals the value.
	JSONField, JSONEquals string
	// Timeout per attempt (DefaultCheckTimeout) and Retries after a
	// failure (DefaultCheckRetries).
	Timeout time.Duration
	Retries int
	// Line is the line of the [[services.checks]] header.
	Line int `view:"-"`
}

// The defaults of a check's timeout and retries.
const (
	DefaultCheckTimeout = 2 * time.Second
	DefaultCheckRetries = 2
)

// ImplicitHealthCheck is the check testAll (and test-all.sh) runs for a
// service that names no HTTP check of its own: GET its health path, 200.
// A service whose port is not published gets it as a network check, made
// from inside the stack's network.
func (s *Service) ImplicitHealthCheck(published bool) *Check {
	c := &Check{Name: "health", Kind: CheckHTTP, Path: s.Health, Status: 200,
		Timeout: DefaultCheckTimeout, Retries: DefaultCheckRetries}
	if !published {
		c.Kind = CheckNetwork
	}
	return c
}

// All returns infrastructure then services: the order in which they start.
func (c *Catalog) All() []*Service {
	out := make([]*Service, 0, len(c.Infrastructure)+len(c.Services))
	out = append(out, c.Infrastructure...)
	return append(out, c.Services...)
}

// Service returns the service or infrastructure entry with that name.
func (c *Catalog) Service(name string) (*Service, bool) {
	for _, s := range c.All() {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// Env returns the named environment, or an error listing the known ones.
func (c *Catalog) Env(name string) (*Environment, error) {
	if e, ok := c.Environments[name]; ok {
		return e, nil
	}
	return nil, &Error{File: c.File, Key: "environments." + name,
		Msg:  "no such environment",
		Hint: "known environments: " + joinKeys(c.Environments)}
}

func joinKeys[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s
}

// SecretAt names where service s declares secret name, as
// "file:line: key" (services[4].secrets.NAME for the table form,
// services[4].secrets[0] for the array form), or "" when s does not
// declare it. Messages about a secret point there instead of showing it.
func (c *Catalog) SecretAt(s *Service, name string) string {
	p, ok := s.SecretPlaces[name]
	if !ok {
		return ""
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", c.File, p.Line, p.Key)
	}
	return fmt.Sprintf("%s: %s", c.File, p.Key)
}

// Scoped is the name compose and docker stack give, in project, to an
// object the catalog names: its network, a swarm service ("<project>_<name>").
func Scoped(project, name string) string { return project + "_" + name }

// ImageRepo is the repository built images of s are tagged in:
// "<project>/<service>". A service with Image set runs that image instead.
func (c *Catalog) ImageRepo(s *Service) string {
	return c.Project.Name + "/" + s.Name
}

// ImageRef is the reference a rendered compose file runs for s when no
// release pins another: the repository's "latest" tag, which build moves to
// the newest image, or the service's own Image.
func (c *Catalog) ImageRef(s *Service) string {
	if s.Image != "" {
		return s.Image
	}
	return c.ImageRepo(s) + ":latest"
}

// Volume is one entry of a service's volumes: compose's short syntax in
// Spec, or its long syntax in Long.
type Volume struct {
	// Spec is "name:/path[:mode]" for a named volume, "/host/path:/path[:mode]"
	// for a bind mount (the host path absolute once loaded: a relative one
	// is taken from the catalog's folder), or "/path" for an anonymous
	// volume. Empty when Long is set.
	Spec string
	// Long is compose's long syntax as written (a table: type, source,
	// target, read_only, bind, volume, tmpfs), a bind mount's source made
	// absolute. nil when Spec is set.
	Long map[string]any
}

// Value is the volume as a compose file holds it: the short string, or
// the long syntax's table.
func (v Volume) Value() any {
	if v.Long != nil {
		return v.Long
	}
	return v.Spec
}

// MarshalJSON writes a short-syntax volume as its string and a long one
// as its table, so that records and config hashes of catalogs holding
// named volumes only read as they did when volumes were strings.
func (v Volume) MarshalJSON() ([]byte, error) {
	if v.Long != nil {
		return json.Marshal(v.Long)
	}
	return json.Marshal(v.Spec)
}

// Named returns the named volume v mounts, or "" for a bind mount, a
// tmpfs or an anonymous volume.
func (v Volume) Named() string {
	if v.Long != nil {
		if t, _ := v.Long["type"].(string); t != "volume" {
			return ""
		}
		s, _ := v.Long["source"].(string)
		return s
	}
	src, _, ok := strings.Cut(v.Spec, ":")
	if !ok || strings.ContainsAny(src[:min(len(src), 1)], "/.~") {
		return ""
	}
	return src
}

// Bind reports whether v is a bind mount.
func (v Volume) Bind() bool {
	if v.Long != nil {
		t, _ := v.Long["type"].(string)
		return t == "bind"
	}
	src, _, ok := strings.Cut(v.Spec, ":")
	return ok && src != "" && strings.ContainsAny(src[:1], "/.~")
}

// ComposeFor returns the compose keys the catalog does not model for
// environment env: Compose, with the keys of ComposeEnv[env] replacing
// those of the same name. The result is a new map; the values are shared.
func (s *Service) ComposeFor(env string) map[string]any {
	out := make(map[string]any, len(s.Compose)+len(s.ComposeEnv[env]))
	for k, v := range s.Compose {
		out[k] = v
	}
	for k, v := range s.ComposeEnv[env] {
		out[k] = v
	}
	return out
}

// ExecHealthcheck holds the timings the array form of healthcheck renders
// with. The engine runs the check every Interval in a compose file, which
// costs next to nothing while the stack idles: the runner runs the check
// itself while a container starts (health.ProbeEvery), so starts and
// dependants need not wait for the engine's first check, which comes one
// interval after the start (API 1.41 has no start_interval). A swarm
// counts a task as running only once the engine's own check passed, so a
// stack file's checks run every StackInterval, not to hold up a rolling
// update. A slow start gets StartPeriod.
var ExecHealthcheck = struct {
	Interval, StackInterval, Timeout, StartPeriod string
	Retries                                       int
}{Interval: "30s", StackInterval: "5s", Timeout: "3s", StartPeriod: "60s", Retries: 5}
