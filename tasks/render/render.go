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
		shTmpl, tmplErr = template.New("sh").Delims("{%", "%}").Funcs(funcs).ParseFS(tfs, "deploy-all.sh.tmpl", "test-all.sh.tmpl", "healthcheck.sh.tmpl")
	})
	return tmplErr
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

func (r *renderer) releaseNote() string {
	if r.opts.Release == "" {
		return ""
	}
	return fmt.Sprintf(", release %q", r.opts.Release)
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
	if r.env.Kind().Stack {
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
