// Package render turns a catalog environment into a deployment folder:
// compose files for the whole stack, for each service and for the shared
// infrastructure, .env files holding the settings and the secrets, the
// deploy-all.sh and test-all.sh scripts for hosts without Go, a swarm stack
// file for swarm environments, and a .manifest with a checksum of each file.
//
// Render is pure: it returns the files and checks every compose file with
// compose-go first (or, with Options.DeferValidation, leaves that to Write
// and Plan, which check the files they change). Write puts a tree on disk
// atomically and refuses to replace files edited by hand; Plan shows what
// Write would change.
package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/templates"
)

// Names of the files and folders render writes.
const (
	ComposeFile = "docker-compose.yml"
	StackFile   = "docker-stack.yml" // swarm environments only
	EnvFile     = ".env"
	// EnvExample is beside each .env: every variable it sets, the values
	// of secrets left blank, so that the folder says what it needs.
	EnvExample   = ".env.example"
	ManifestFile = ".manifest"
	DeployScript = "deploy-all.sh"
	TestScript   = "test-all.sh"
	InfraDir     = "infrastructure"
	// BackupDir holds, per Write with Overwrite, the hand-edited files it
	// replaced: .backup/<UTC timestamp>/<path>.
	BackupDir = ".backup"
)

// File is one file of a rendered deployment folder.
type File struct {
	// Path is slash-separated and relative to the folder.
	Path string
	Data []byte
	Mode fs.FileMode

	// check is set on a compose file whose validation Render deferred to
	// Write and Plan.
	check *composeCheck
}

// Tree is a rendered deployment folder, sorted by Path.
type Tree []File

// File returns the file at path.
func (t Tree) File(path string) (File, bool) {
	i := sort.Search(len(t), func(i int) bool { return t[i].Path >= path })
	if i < len(t) && t[i].Path == path {
		return t[i], true
	}
	return File{}, false
}

// Options change what Render writes.
type Options struct {
	// Images pins the image reference of services by name (releases pin
	// tested tags); a service not named runs catalog.ImageRef.
	Images map[string]string
	// Build adds build sections (absolute source folder and Dockerfile) and
	// the pre-build and build steps of deploy-all.sh: for local renders.
	// Releases and remote hosts run images that already exist.
	Build bool
	// Release is an id written into headers, labels, .env and the
	// manifest: letters, digits, '.', '_', ':' and '-'.
	Release string
	// Proxied leaves the published ports out of the services: a reverse
	// proxy publishes them (remote environments), so that a service's new
	// container can start beside its old one. .env and the scripts still
	// name the ports.
	Proxied bool
	// SecretKey keys the digests of secret values that go into each
	// service's config hash (labels.ConfigHash), so that a changed secret
	// replaces the services that use it while the label reveals nothing
	// of the value. Without a key, secrets count by name only.
	SecretKey []byte
	// DeferValidation leaves the compose-go check of the compose files to
	// Write and Plan, which check only the files they would change (a
	// compose file is checked again when it or its .env changes): a render
	// onto an up-to-date folder then checks nothing. Use it only for trees
	// that reach disk through Write; Render alone then returns unchecked
	// compose files.
	DeferValidation bool
}

// SecretVar is the .env variable that carries secret key of a service; the
// compose files refer to it as ${SecretVar}. Service names become upper
// case with '-' as '_'; the key is kept as written.
func SecretVar(service, key string) string {
	return SecretVarPrefix + envName(service) + "__" + key
}

// SecretVarPrefix begins every SecretVar: a .env variable named so holds a
// secret's value.
const SecretVarPrefix = "SECRET__"

// SwarmSecretName is the name of the Docker secret that carries secret
// key of service in a swarm stack: a swarm secret cannot change, so its
// name changes with the value, by a digest keyed with secretKey (see
// Options.SecretKey) that reveals nothing of it.
func SwarmSecretName(project, service, key, value string, secretKey []byte) string {
	d := strings.TrimPrefix(record.Digest(secretKey, value), "hmac:")
	return project + "_" + service + "_" + key + "_" + d[:12]
}

// SwarmSecretFile is where a swarm service finds secret key: the file the
// <key>_FILE variable names, the convention of official images.
func SwarmSecretFile(key string) string { return "/run/secrets/" + key }

// PortVar is the .env variable holding the published host port of a
// service (informational: the compose files carry the number itself).
func PortVar(service string) string { return "PORT_" + envName(service) }

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

var (
	releaseID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
)

type buildView struct {
	Context, Dockerfile string
	// Args and Target are left out of the config hash when empty, so that
	// services without them keep the hash they had before they existed.
	Args   []kv   `json:",omitempty"`
	Target string `json:",omitempty"`
}

type envVar struct {
	Key, Value string
	// Ref marks a ${VAR} reference to .env: quoted without doubling '$'.
	Ref bool
}

type depView struct{ Name, Condition string }

type publishView struct{ Target, Published int }

type kv struct{ Key, Value string }

type svcView struct {
	Name        string
	Image       string
	Build       *buildView
	Ports       []string
	Env         []envVar
	Healthcheck []string
	DependsOn   []depView
	Labels      []kv
	Volumes     []catalog.Volume
	Replicas    int
	// The pieces below are rendered YAML, each starting with a line break
	// and holding keys at the service's indentation (see yaml.go), or "".
	// HealthcheckYAML is the table form of healthcheck; VolumesYAML the
	// volumes key.
	HealthcheckYAML, VolumesYAML string
	// ComposeExtra is the compose passthrough of a compose file, restart
	// apart; Restart is restart's value, quoted ("" = unless-stopped).
	ComposeExtra, Restart string
	// StackExtra is the passthrough of a stack file: restart, expose and
	// deploy apart; DeployExtra holds deploy's keys, at deploy's
	// indentation; StackDropped names what a stack file leaves out.
	StackExtra, DeployExtra, StackDropped string
	// Publish is the published port (nil = none), for the long port
	// syntax of a stack file.
	Publish *publishView
	// SwarmSecrets are the Docker secrets of the service in a stack file.
	SwarmSecrets []swarmSecretRef
	// MaxPerNode is deploy.placement.max_replicas_per_node (0 = none).
	MaxPerNode int
	// PlacementExtra is true when DeployExtra holds a placement (from the
	// passthrough), which then carries MaxPerNode: YAML allows one
	// placement key.
	PlacementExtra bool
	// Block is the service's block in the file at hand, made of the
	// pieces rendered once: head, depends_on and tail.
	Block string

	head, allDeps, tail string
	stack               bool // the pieces are for a stack file

	svc      *catalog.Service
	hostPort int
	secrets  []kv // .env name, value
	// compose is the compose passthrough of the environment.
	compose map[string]any
}

// blockView is what the service-head, -deps and -tail templates get.
// EndpointMode and PublishMode are the swarm environment's (stack files
// only).
type blockView struct {
	Svc                       *svcView
	Stack                     bool
	Network                   string
	EndpointMode, PublishMode string
}

type composeView struct {
	Header   []string
	Stack    bool
	Services []*svcView
	// Elsewhere are the stack's services a folder's file does not run:
	// named, never started from there (see withDeps).
	Elsewhere []*svcView
	Network   string
	Volumes   []string
	// Secrets are a stack file's Docker secrets, all external: the
	// runtime creates them before the stack is deployed.
	Secrets []swarmSecretRef
}

// swarmSecretRef is a Docker secret in a stack file: Alias is its key in
// the file, Name the secret's name in the swarm, Target the file name it
// is mounted as in the container (/run/secrets/<Target>).
type swarmSecretRef struct{ Alias, Name, Target string }

type envSection struct {
	Comment string
	Vars    []kv
	// Secret marks the section of secrets, blank in an example.
	Secret bool
}

type envView struct {
	Header   []string
	Sections []envSection
	// Example renders .env.example: secrets blank.
	Example bool
}

var (
	tmplOnce sync.Once
	tmplErr  error
	yamlTmpl *template.Template
	envTmpl  *template.Template
	shTmpl   *template.Template
)

func loadTemplates() error {
	tmplOnce.Do(func() {
		funcs := template.FuncMap{"yq": yamlQuote, "cq": composeQuote, "envq": envQuote, "sh": shellQuote}
		tfs := templates.FS()
		if yamlTmpl, tmplErr = template.New("compose.yml.tmpl").Funcs(funcs).ParseFS(tfs, "compose.yml.tmpl"); tmplErr != nil {
			return
		}
		if envTmpl, tmplErr = template.New("env.tmpl").Funcs(funcs).ParseFS(tfs, "env.tmpl"); tmplErr != nil {
			return
		}
		shTmpl, tmplErr = template.New("sh").Delims("{%", "%}").Funcs(funcs).ParseFS(tfs, "deploy-all.sh.tmpl", "test-all.sh.tmpl")
	})
	return tmplErr
}

// blocks renders the pieces of v's service block (see compose.yml.tmpl),
// the depends_on piece with every dependency.
func (r *renderer) blocks(v *svcView, stack bool) error {
	var b strings.Builder
	v.DependsOn = r.deps(v, nil)
	bv := r.blockView(v, stack)
	for _, p := range []struct {
		name string
		out  *string
	}{{"service-head", &v.head}, {"service-deps", &v.allDeps}, {"service-tail", &v.tail}} {
		b.Reset()
		if err := yamlTmpl.ExecuteTemplate(&b, p.name, bv); err != nil {
			return err
		}
		*p.out = b.String()
	}
	v.stack = stack
	return nil
}

func (r *renderer) blockView(v *svcView, stack bool) blockView {
	bv := blockView{Svc: v, Stack: stack, Network: r.cat.Project.Network}
	if stack {
		bv.EndpointMode, bv.PublishMode = swarmModes(r.env)
	}
	return bv
}

// swarmModes are the environment's endpoint and publish modes, with
// swarm's defaults for a catalog built in code that leaves them empty.
func swarmModes(env *catalog.Environment) (endpoint, publish string) {
	endpoint, publish = env.EndpointMode, env.PublishMode
	if endpoint == "" {
		endpoint = catalog.EndpointVIP
	}
	if publish == "" {
		publish = catalog.PublishIngress
	}
	return endpoint, publish
}

func execute(t *template.Template, name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		return nil, err
	}
	out := bytes.TrimLeft(b.Bytes(), "\n")
	if len(out) == 0 || out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out, nil
}

// testHookRendered, when set, may change a compose file of the tree between
// rendering and validation: tests make compose-go reject one.
var testHookRendered func(path string, data []byte) []byte

type renderer struct {
	cat    *catalog.Catalog
	env    *catalog.Environment
	opts   Options
	header []string
	byName map[string]*svcView
}

// Render returns the deployment folder of one environment of the catalog.
// It is pure (it reads no files and starts nothing) and deterministic: the
// same input gives the same bytes. Every compose file is loaded back with
// compose-go, and every .env file parsed back, before Render returns, so an
// invalid or misquoted file is an error here and is never written. With
// opts.DeferValidation that check moves to Write and Plan, for the files
// they would change. The secrets it writes must be env's: resolved for it
// by package secrets, or, for a local environment only, the catalog's dev
// defaults as Load left them (see catalog.Catalog.SecretsEnv).
func Render(cat *catalog.Catalog, env *catalog.Environment, opts Options) (Tree, error) {
	if cat == nil || env == nil {
		return nil, fmt.Errorf("render: no catalog or environment")
	}
	if err := loadTemplates(); err != nil {
		return nil, fmt.Errorf("render: templates: %w", err)
	}
	r := &renderer{cat: cat, env: env, opts: opts, byName: map[string]*svcView{}}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	tree, err := r.files(!opts.DeferValidation)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	sort.Slice(tree, func(i, j int) bool { return tree[i].Path < tree[j].Path })
	m, err := newManifest(cat.Project.Name, env.Name, opts.Release, tree)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	// 0600: it holds a checksum of every .env file, secrets and all.
	tree = append(tree, File{Path: ManifestFile, Data: m, Mode: 0o600})
	sort.Slice(tree, func(i, j int) bool { return tree[i].Path < tree[j].Path })
	return tree, nil
}

// Check refuses what Render would refuse for env (options, secrets no .env
// can carry, a name the layout takes), without rendering: promote
// calls it before it connects to a host.
func Check(cat *catalog.Catalog, env *catalog.Environment, opts Options) error {
	if cat == nil || env == nil {
		return fmt.Errorf("render: no catalog or environment")
	}
	r := &renderer{cat: cat, env: env, opts: opts, byName: map[string]*svcView{}}
	if err := r.check(); err != nil {
		return fmt.Errorf("render %s: %w", env.Name, err)
	}
	return nil
}

// check refuses what the templates could not carry of this render's own
// inputs: the options, and the secrets' values as resolved for env. The
// catalog's names, settings and swarm rules are catalog.Load's to refuse
// (its one validator, with file:line); Render trusts a loaded catalog.
func (r *renderer) check() error {
	if r.opts.Release != "" && !releaseID.MatchString(r.opts.Release) {
		return fmt.Errorf("invalid release id %q (letters, digits, '.', '_', ':' and '-', at most 128)", r.opts.Release)
	}
	if err := r.checkSecrets(); err != nil {
		return err
	}
	names := map[string]bool{}
	secretVars := map[string]string{}
	for _, s := range r.cat.All() {
		names[s.Name] = true
		if !s.Infra && s.Name == InfraDir {
			return fmt.Errorf("service %s: the name is taken by the %s/ folder of the deployment; rename the service", s.Name, InfraDir)
		}
		for k, v := range s.Secrets {
			if _, err := envQuote(v); err != nil {
				return fmt.Errorf("service %s: secret %s: %w, which no .env file can carry; change the value", s.Name, k, err)
			}
			sv := SecretVar(s.Name, k)
			if other, dup := secretVars[sv]; dup {
				return fmt.Errorf("service %s: secret %s and %s both map to the .env variable %s; rename one", s.Name, k, other, sv)
			}
			secretVars[sv] = s.Name + " " + k
		}
	}
	for name := range r.opts.Images {
		if !names[name] {
			return fmt.Errorf("an image is pinned for %q, which the catalog does not declare", name)
		}
	}
	r.header = []string{
		fmt.Sprintf("Rendered by maestro-deploy for project %q, environment %q%s.", r.cat.Project.Name, r.env.Name, r.releaseNote()),
		"Do not edit: `mage render` rewrites this file, and stops at hand edits",
		"unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in " + BackupDir + "/.",
	}
	if r.opts.Release != "" {
		// A release folder on a host is what promote shipped: nothing
		// renders it again there, and a rollback refuses a copy that
		// differs from the shipping machine's record.
		r.header = append(r.header[:1],
			"Do not edit: this is the release as `mage promote` shipped it; `mage rollback`",
			"refuses a release whose files differ from the record kept where it was shipped from.")
	}
	return nil
}

// checkSecrets refuses secrets that are not this environment's: values
// resolved for another environment, the catalog's dev defaults on a remote
// environment (the catalog is committed, so a literal in it is no secret
// and must never guard a host others reach), and a declared secret with no
// value, which would leave the container without it. A catalog built in
// code that sets Secrets alone, without SecretNames, is taken as it is.
func (r *renderer) checkSecrets() error {
	declared := false
	for _, s := range r.cat.All() {
		declared = declared || len(s.SecretNames) > 0
	}
	if !declared {
		return nil
	}
	const how = "resolve the secrets for it first (secrets.Resolve)"
	switch got := r.cat.SecretsEnv; {
	case got != "" && got != r.env.Name:
		return fmt.Errorf("the secrets were resolved for environment %s, not for %s: %s", got, r.env.Name, how)
	case got == "" && r.env.Remote():
		return fmt.Errorf("environment %s is remote and its secrets are not resolved: the catalog's dev defaults are never used for a remote environment; %s", r.env.Name, how)
	}
	for _, s := range r.cat.All() {
		for _, n := range s.SecretNames {
			if _, ok := s.Secrets[n]; !ok {
				return fmt.Errorf("service %s: secret %s has no value: %s", s.Name, n, how)
			}
		}
	}
	return nil
}

func (r *renderer) releaseNote() string {
	if r.opts.Release == "" {
		return ""
	}
	return fmt.Sprintf(", release %q", r.opts.Release)
}

func (r *renderer) service(s *catalog.Service) (*svcView, error) {
	v := &svcView{Name: s.Name, Image: r.cat.ImageRef(s), svc: s, Replicas: max(s.Replicas, 1),
		Healthcheck: s.Healthcheck, Volumes: s.Volumes, MaxPerNode: s.MaxReplicasPerNode, compose: s.ComposeFor(r.env.Name)}
	if img, ok := r.opts.Images[s.Name]; ok {
		v.Image = img
	}
	if v.Image == "" {
		return nil, fmt.Errorf("service %s: empty image reference", s.Name)
	}
	if r.opts.Build && s.Source != "" {
		df := s.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		v.Build = &buildView{Context: s.Source, Dockerfile: df, Target: s.BuildTarget}
		for _, k := range slices.Sorted(maps.Keys(s.BuildArgs)) {
			v.Build.Args = append(v.Build.Args, kv{k, s.BuildArgs[k]})
		}
	}
	if err := r.yamlPieces(v); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	if p, ok := s.HostPort(r.env.Ports); ok {
		v.hostPort = p
		if !r.opts.Proxied {
			v.Ports = []string{portSpec(r.env.Bind, p, s.Port)}
			v.Publish = &publishView{Target: s.Port, Published: p}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v.Env = append(v.Env, envVar{Key: k, Value: s.Env[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(s.Secrets)) {
		name := SecretVar(s.Name, k)
		v.Env = append(v.Env, envVar{Key: k, Value: "${" + name + "}", Ref: true})
		v.secrets = append(v.secrets, kv{name, s.Secrets[k]})
	}
	sort.SliceStable(v.Env, func(i, j int) bool { return v.Env[i].Key < v.Env[j].Key })
	role := labels.RoleService
	if s.Infra {
		role = labels.RoleInfrastructure
	}
	hash, err := r.configHash(v, role)
	if err != nil {
		return nil, err
	}
	v.Labels = []kv{
		{labels.ConfigHash, hash},
		{labels.Environment, r.env.Name},
	}
	v.Labels = append(v.Labels, kv{labels.Role, role}, kv{labels.Service, s.Name})
	for k, val := range s.Labels {
		v.Labels = append(v.Labels, kv{k, val})
	}
	sort.SliceStable(v.Labels, func(i, j int) bool { return v.Labels[i].Key < v.Labels[j].Key })
	return v, nil
}

// yamlPieces renders what the catalog carries as written: the table form
// of healthcheck, volumes, and the compose passthrough, for compose files
// and for stack files.
func (r *renderer) yamlPieces(v *svcView) error {
	piece := func(write func(b *strings.Builder) error) (string, error) {
		var b strings.Builder
		if err := write(&b); err != nil {
			return "", err
		}
		if b.Len() == 0 {
			return "", nil
		}
		return "\n" + strings.TrimSuffix(b.String(), "\n"), nil
	}
	var err error
	s := v.svc
	if s.HealthcheckOptions != nil {
		if v.HealthcheckYAML, err = piece(func(b *strings.Builder) error {
			return writeYAMLKey(b, 4, "healthcheck", s.HealthcheckOptions)
		}); err != nil {
			return err
		}
	}
	if len(s.Volumes) > 0 {
		vols := make([]any, len(s.Volumes))
		for i, vol := range s.Volumes {
			vols[i] = vol.Value()
		}
		if v.VolumesYAML, err = piece(func(b *strings.Builder) error { return writeYAMLKey(b, 4, "volumes", vols) }); err != nil {
			return err
		}
	}
	keys := slices.Sorted(maps.Keys(v.compose))
	if v.ComposeExtra, err = piece(func(b *strings.Builder) error {
		for _, k := range keys {
			if k != "restart" {
				if err := writeYAMLKey(b, 4, k, v.compose[k]); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if restart, ok := v.compose["restart"]; ok {
		if v.Restart, err = yamlScalar(normalize(restart)); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
	}
	var dropped []string
	if v.StackExtra, err = piece(func(b *strings.Builder) error {
		for _, k := range keys {
			if _, ok := catalog.StackDropped[k]; ok {
				dropped = append(dropped, k)
				continue
			}
			if k == "deploy" {
				continue
			}
			if err := writeYAMLKey(b, 4, k, v.compose[k]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if len(dropped) > 0 {
		v.StackDropped = strings.Join(dropped, ", ") + ": left out, docker stack deploy ignores them"
	}
	if d, ok := normalize(v.compose["deploy"]).(map[string]any); ok {
		if p, ok := d["placement"].(map[string]any); ok {
			v.PlacementExtra = true
			if v.MaxPerNode > 0 {
				withMax := maps.Clone(p)
				withMax["max_replicas_per_node"] = v.MaxPerNode
				d = maps.Clone(d)
				d["placement"] = withMax
			}
		}
		if v.DeployExtra, err = piece(func(b *strings.Builder) error { return writeYAMLMap(b, 6, d) }); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
	}
	return nil
}

// configHash is a hash of what the service runs with: a container whose
// label holds another runs another configuration. Secret values enter as
// keyed digests (Options.SecretKey).
func (r *renderer) configHash(v *svcView, role string) (string, error) {
	var secrets []string
	for _, sv := range v.secrets {
		d := sv.Key
		if r.opts.SecretKey != nil {
			d += "=" + record.Digest(r.opts.SecretKey, sv.Value)
		}
		secrets = append(secrets, d)
	}
	// Fields added since the first are left out when empty, so that a
	// service that does not use them keeps its hash.
	sum, err := json.Marshal(struct {
		Image, Network, Role string
		Build                *buildView
		Ports, Healthcheck   []string
		Volumes              []catalog.Volume
		Env                  []envVar
		Secrets              []string
		Deploy               *swarmDeploy      `json:",omitempty"`
		HealthcheckOptions   map[string]any    `json:",omitempty"`
		Labels               map[string]string `json:",omitempty"`
		Compose              map[string]any    `json:",omitempty"`
	}{v.Image, r.cat.Project.Network, role, v.Build, v.Ports, v.Healthcheck, v.Volumes, v.Env, secrets,
		r.swarmDeploy(v), v.svc.HealthcheckOptions, v.svc.Labels, v.compose})
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	return hex.EncodeToString(h[:]), nil
}

// ConfigHashes returns the config hash (labels.ConfigHash) Render gives
// each service of the environment, by name, without rendering files.
func ConfigHashes(cat *catalog.Catalog, env *catalog.Environment, opts Options) (map[string]string, error) {
	r := &renderer{cat: cat, env: env, opts: opts, byName: map[string]*svcView{}}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	out := map[string]string{}
	for _, s := range cat.All() {
		v, err := r.service(s)
		if err != nil {
			return nil, err
		}
		for _, l := range v.Labels {
			if l.Key == labels.ConfigHash {
				out[s.Name] = l.Value
			}
		}
	}
	return out, nil
}

func portSpec(bind string, host, container int) string {
	spec := strconv.Itoa(host) + ":" + strconv.Itoa(container)
	if bind == "" {
		return spec
	}
	if strings.Contains(bind, ":") {
		bind = "[" + bind + "]"
	}
	return bind + ":" + spec
}

// deps returns the dependencies of v among the services in (all when in
// is nil): each rendered file must stand alone.
func (r *renderer) deps(v *svcView, in map[string]bool) []depView {
	var out []depView
	for _, d := range v.svc.DependsOn {
		if in != nil && !in[d] {
			continue
		}
		cond := "service_started"
		if c, ok := v.svc.DependsOnConditions[d]; ok {
			cond = c
		} else if dep := r.byName[d]; dep != nil && len(dep.svc.Healthcheck) > 0 {
			cond = "service_healthy"
		}
		out = append(out, depView{Name: d, Condition: cond})
	}
	return out
}

// inFile returns a copy of v, whose pieces blocks has rendered, for a file
// holding the services in: its Block names only those as dependencies.
func (r *renderer) inFile(v *svcView, in map[string]bool) (*svcView, error) {
	c := *v
	c.DependsOn = r.deps(v, in)
	deps := v.allDeps
	if len(c.DependsOn) != len(v.DependsOn) {
		var b strings.Builder
		bv := r.blockView(&c, v.stack)
		if err := yamlTmpl.ExecuteTemplate(&b, "service-deps", bv); err != nil {
			return nil, err
		}
		deps = b.String()
	}
	c.Block = v.head + deps + v.tail
	return &c, nil
}

// part renders some files of the folder; the parts run in parallel.
type part func() ([]File, error)

// files renders the folder. With validate, each compose file is checked as
// soon as it is rendered; otherwise it carries its check for Write.
func (r *renderer) files(validate bool) (Tree, error) {
	var all, infra, apps []*svcView
	for _, s := range r.cat.All() {
		v, err := r.service(s)
		if err != nil {
			return nil, err
		}
		r.byName[s.Name] = v
		all = append(all, v)
		if s.Infra {
			infra = append(infra, v)
		} else {
			apps = append(apps, v)
		}
	}
	errs := make([]error, len(all))
	parallel(len(all), func(i int) { errs[i] = r.blocks(all[i], false) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// finish applies the test hook, then checks f now or leaves the check
	// on it.
	finish := func(f File, c *composeCheck, envData []byte) (File, error) {
		if testHookRendered != nil {
			f.Data = testHookRendered(f.Path, f.Data)
		}
		f.check = c
		if validate {
			if err := validateOne(c, f.Data, envData); err != nil {
				return File{}, err
			}
			f.check = nil
		}
		return f, nil
	}
	compose := func(dir string, svcs []*svcView) part {
		return func() ([]File, error) {
			in := r.names(svcs)
			cv := composeView{Header: r.header, Network: r.cat.Project.Network}
			for _, v := range svcs {
				c, err := r.inFile(v, in)
				if err != nil {
					return nil, err
				}
				cv.Services = append(cv.Services, c)
			}
			cv.Volumes = volumeNames(svcs)
			if dir != "" {
				for _, v := range all {
					if !in[v.Name] {
						cv.Elsewhere = append(cv.Elsewhere, v)
					}
				}
			}
			data, err := execute(yamlTmpl, "compose.yml.tmpl", cv)
			if err != nil {
				return nil, err
			}
			ev, vars := r.envFile(svcs, dir != "")
			envData, err := execute(envTmpl, "env.tmpl", ev)
			if err != nil {
				return nil, err
			}
			ev.Example = true
			ev.Header = append(slices.Clone(ev.Header), "An example of .env beside it: every variable .env sets, the values of secrets left blank.")
			ev.Sections = slices.Clone(ev.Sections)
			ev.Sections[2].Comment = "Secrets: the compose files refer to them as ${NAME}; .env holds their values, never this file."
			example, err := execute(envTmpl, "env.tmpl", ev)
			if err != nil {
				return nil, err
			}
			c := &composeCheck{path: join(dir, ComposeFile), envPath: join(dir, EnvFile), env: vars, want: wantEnv(svcs)}
			f, err := finish(File{Path: c.path, Data: data, Mode: 0o644}, c, envData)
			if err != nil {
				return nil, err
			}
			return []File{f, {Path: c.envPath, Data: envData, Mode: 0o600}, {Path: join(dir, EnvExample), Data: example, Mode: 0o644}}, nil
		}
	}
	// The whole-stack files are the largest: they go first.
	parts := []part{compose("", all)}
	if r.env.Engine == catalog.EngineSwarm {
		parts = append(parts, func() ([]File, error) {
			cv := composeView{Header: r.header, Stack: true, Network: r.cat.Project.Network, Volumes: volumeNames(all)}
			in := r.names(all)
			want := wantEnv(all)
			for _, v := range all {
				sv := *v
				sv.Build = nil
				// Secrets travel as Docker secrets, encrypted in the
				// swarm's store, mounted as files: the container gets
				// KEY_FILE, never the value in its environment.
				sv.Env = nil
				w := maps.Clone(want[v.Name])
				for _, e := range v.Env {
					if !e.Ref {
						sv.Env = append(sv.Env, e)
						continue
					}
					ref := swarmSecretRef{Alias: v.Name + "_" + e.Key, Target: e.Key,
						Name: SwarmSecretName(r.cat.Project.Name, v.Name, e.Key, v.svc.Secrets[e.Key], r.opts.SecretKey)}
					sv.SwarmSecrets = append(sv.SwarmSecrets, ref)
					cv.Secrets = append(cv.Secrets, ref)
					sv.Env = append(sv.Env, envVar{Key: e.Key + "_FILE", Value: SwarmSecretFile(e.Key)})
					delete(w, e.Key)
					w[e.Key+"_FILE"] = SwarmSecretFile(e.Key)
				}
				sort.SliceStable(sv.Env, func(i, j int) bool { return sv.Env[i].Key < sv.Env[j].Key })
				want[v.Name] = w
				if err := r.blocks(&sv, true); err != nil {
					return nil, err
				}
				c, err := r.inFile(&sv, in)
				if err != nil {
					return nil, err
				}
				cv.Services = append(cv.Services, c)
			}
			data, err := execute(yamlTmpl, "compose.yml.tmpl", cv)
			if err != nil {
				return nil, err
			}
			// Checked with the top .env, which carries every service's
			// secrets: the unified file's part renders the same bytes.
			ev, vars := r.envFile(all, false)
			envData, err := execute(envTmpl, "env.tmpl", ev)
			if err != nil {
				return nil, err
			}
			f, err := finish(File{Path: StackFile, Data: data, Mode: 0o644},
				&composeCheck{path: StackFile, envPath: EnvFile, env: vars, want: want}, envData)
			return []File{f}, err
		})
	}
	sv, err := r.scriptView(all)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct{ name, tmpl string }{{DeployScript, "deploy-all.sh.tmpl"}, {TestScript, "test-all.sh.tmpl"}} {
		parts = append(parts, func() ([]File, error) {
			data, err := execute(shTmpl, s.tmpl, sv)
			return []File{{Path: s.name, Data: data, Mode: 0o755}}, err
		})
	}
	parts = append(parts, compose(InfraDir, withDeps(all, infra)))
	for _, v := range apps {
		parts = append(parts, compose(v.Name, withDeps(all, []*svcView{v})))
	}
	out := make([][]File, len(parts))
	errs = make([]error, len(parts))
	parallel(len(parts), func(i int) { out[i], errs[i] = parts[i]() })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var tree Tree
	for _, files := range out {
		tree = append(tree, files...)
	}
	return tree, nil
}

// parallel runs fn(0..n-1), as many at once as there are processors;
// each fn keeps its own error, so that every problem is reported.
func parallel(n int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range n {
		g.Go(func() error { fn(i); return nil })
	}
	_ = g.Wait()
}

// withDeps is svcs and every service they depend on, directly or not, in
// the order of all. A folder's compose file carries its dependencies as the
// whole stack's file does, block for block, so that compose, which hashes
// depends_on too (v1), finds their containers and the service's own up to
// date: `up -d` there recreates nothing that did not change.
func withDeps(all, svcs []*svcView) []*svcView {
	want := map[string]bool{}
	byName := map[string]*svcView{}
	for _, v := range all {
		byName[v.Name] = v
	}
	var add func(v *svcView)
	add = func(v *svcView) {
		if want[v.Name] {
			return
		}
		want[v.Name] = true
		for _, d := range v.svc.DependsOn {
			if dv, ok := byName[d]; ok {
				add(dv)
			}
		}
	}
	for _, v := range svcs {
		add(v)
	}
	var out []*svcView
	for _, v := range all {
		if want[v.Name] {
			out = append(out, v)
		}
	}
	return out
}

func (r *renderer) names(svcs []*svcView) map[string]bool {
	in := map[string]bool{}
	for _, v := range svcs {
		in[v.Name] = true
	}
	return in
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func volumeNames(svcs []*svcView) []string {
	set := map[string]bool{}
	for _, v := range svcs {
		for _, vol := range v.Volumes {
			if n := vol.Named(); n != "" {
				set[n] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func wantEnv(svcs []*svcView) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, v := range svcs {
		m := map[string]string{}
		for k, val := range v.svc.Env {
			m[k] = val
		}
		for k, val := range v.svc.Secrets {
			m[k] = val
		}
		out[v.Name] = m
	}
	return out
}

// envFile is the .env of a compose file of svcs. part marks a folder that
// holds some of the stack's services (a service's, infrastructure/): the
// others are no orphans there, so compose must not offer to remove them.
func (r *renderer) envFile(svcs []*svcView, part bool) (envView, map[string]string) {
	vars := map[string]string{}
	settings := []kv{{"COMPOSE_PROJECT_NAME", r.cat.Project.Name}}
	if part {
		settings = append(settings, kv{"COMPOSE_IGNORE_ORPHANS", "true"})
	}
	settings = append(settings, kv{"DEPLOY_ENVIRONMENT", r.env.Name})
	if r.opts.Release != "" {
		settings = append(settings, kv{"DEPLOY_RELEASE", r.opts.Release})
	}
	var ports, secrets []kv
	for _, v := range svcs {
		if v.hostPort != 0 {
			ports = append(ports, kv{PortVar(v.Name), strconv.Itoa(v.hostPort)})
		}
		secrets = append(secrets, v.secrets...)
	}
	if slices.ContainsFunc(secrets, func(e kv) bool { return envNeedsDollar(e.Value) }) {
		// Set before the values that refer to it.
		settings = append([]kv{{DollarVar, "$"}}, settings...)
	}
	for _, list := range [][]kv{settings, ports, secrets} {
		for _, e := range list {
			vars[e.Key] = e.Value
		}
	}
	return envView{Header: r.header, Sections: []envSection{
		{"Compose reads COMPOSE_* settings from here: pass the same project name as -p.", settings, false},
		{"Published host ports, for scripts (the compose files carry the numbers themselves).", ports, false},
		{"Secrets: the compose files refer to them as ${NAME}; their values live only here.", secrets, true},
	}}, vars
}
