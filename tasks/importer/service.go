package importer

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/format"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/maestro-platform/deploy/internal/tree"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Finding is one thing import says about a compose file: a loss (what it
// cannot carry) or a note (what it maps on purpose), at its line.
type Finding struct {
	File string
	Line int
	// Key is the compose key, e.g. services.web.links.
	Key string
	Msg string
}

func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
	}
	if f.Key != "" {
		b.WriteString(": " + f.Key)
	}
	b.WriteString(": " + f.Msg)
	// Keys and values come from the file: they may not move the cursor
	// or hide what the line says.
	return ui.Clean(b.String())
}

// entry is a catalog entry import proposes.
type entry struct {
	Name                string
	Infra               bool
	Source              string
	Port                int
	DevPort, ProdPort   int
	ExtraPorts          map[string]int
	Healthcheck         []string       // the array form
	HealthcheckTable    map[string]any // the table form
	DependsOn           []string
	DependsOnConditions map[string]string // the table form, when set
	Secrets             []string
	Volumes             []any // string or map[string]any
	PrebuildInputs      []string
	Replicas            int
	Checks              []map[string]any
	Compose             map[string]any
	// Written are the catalog's keys that an entry holds as the file
	// writes them; Settings the compose keys the catalog carries under
	// their own name, lifted from the compose service as they are.
	catalog.Written
	catalog.Settings

	// From where: the file and the service's line in it.
	File string
	Line int
	// published is the host port of the file (0 = none), which the dev
	// port is derived from once every entry is known.
	published int
	// hasHealth says the container has its own healthcheck.
	hasHealth bool
	// conditions are the file's depends_on conditions, settled into
	// DependsOn or DependsOnConditions once every entry is known.
	conditions map[string]string
}

// mapper turns the services of one compose file into entries.
type mapper struct {
	f      *composeFile
	catDir string
	// prebuild says the operator takes the files' host commands.
	prebuild bool
	losses   []Finding
	notes    []Finding
	// warnings are what import takes only because it was told to.
	warnings []Finding
	// said are the top-level keys a loss was reported for.
	said map[string]bool
	// tainted are the paths of the current service's strings that carry
	// a secret: never imported.
	tainted map[string]bool
}

func (m *mapper) loss(path, format string, args ...any) {
	if !strings.HasPrefix(path, "services.") {
		// A top-level definition several services use: said once.
		if m.said[path] {
			return
		}
		if m.said == nil {
			m.said = map[string]bool{}
		}
		m.said[path] = true
	}
	m.losses = append(m.losses, Finding{File: m.f.Shown, Line: m.f.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (m *mapper) note(path, format string, args ...any) {
	m.notes = append(m.notes, Finding{File: m.f.Shown, Line: m.f.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (m *mapper) warn(path, format string, args ...any) {
	m.warnings = append(m.warnings, Finding{File: m.f.Shown, Line: m.f.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// rebase writes an absolute path relative to the catalog's folder, the
// way the catalog takes paths, unless the two share no folder but the
// root: then the path stays absolute rather than climb to / and down.
func (m *mapper) rebase(abs string) string {
	rel, err := filepath.Rel(m.catDir, abs)
	if err != nil {
		return abs
	}
	up := 0
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		if part == ".." {
			up++
		}
	}
	if up > 0 && up >= len(strings.Split(strings.Trim(filepath.ToSlash(m.catDir), "/"), "/")) {
		return abs
	}
	return filepath.ToSlash(rel)
}

// bindPath writes a bind mount's host path for the catalog: absolute as
// written when it was absolute (or under ~), else rebased to the catalog
// and starting with ./ or ../, so that it reads as a path.
func (m *mapper) bindPath(written, abs string) string {
	if filepath.IsAbs(written) || strings.HasPrefix(written, "~") {
		return written
	}
	rel := m.rebase(abs)
	if rel == "." || rel == ".." || filepath.IsAbs(rel) || strings.HasPrefix(rel, "../") {
		return rel
	}
	return "./" + rel
}

// catalogName is the DNS label a compose service name becomes.
func catalogName(name string) string {
	n := strings.ToLower(name)
	n = strings.NewReplacer("_", "-", ".", "-").Replace(n)
	n = strings.Trim(n, "-")
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// handled are the compose keys service maps itself; every other key is
// proposed for the compose passthrough.
var handled = map[string]bool{
	"image": true, "build": true, "ports": true, "environment": true, "env_file": true,
	"healthcheck": true, "depends_on": true, "networks": true, "labels": true, "label_file": true,
	"volumes": true, "restart": true, "deploy": true, "x-maestro": true, "extends": true, "secrets": true,
	"container_name": true, "network_mode": true,
}

// service maps one compose service to a catalog entry.
func (m *mapper) service(name string) (*entry, error) {
	f := m.f
	at := "services." + name
	svc := f.project.Services[name]
	raw, err := m.rawService(name)
	if err != nil {
		return nil, err
	}
	e := &entry{Name: catalogName(name), File: f.Shown, Line: f.line(at)}
	if err := m.guard(at); err != nil {
		return nil, err
	}
	if !catalog.DNSLabel.MatchString(e.Name) {
		return nil, catalog.Errors{f.errorAt(at, "rename the service: letters, digits and '-'", "service name %q makes no DNS label", name)}
	}
	if e.Name != name {
		m.loss(at, "the name %q is no DNS label: imported as %q, the name other services reach it by", name, e.Name)
	}
	if _, ok := raw["extends"]; ok {
		m.note(at+".extends", "extends is merged into the service's own keys")
	}
	if err := m.xMaestro(at, raw, e); err != nil {
		return nil, err
	}
	m.build(at, &svc, e)
	m.ports(at, &svc, e)
	m.environment(at, &svc, raw, e)
	m.fileSecrets(at, raw, e)
	m.containerName(at, raw, e)
	m.healthcheck(at, raw, e)
	m.dependsOn(at, &svc, raw, e)
	m.networks(at, &svc)
	m.labels(at, &svc, e)
	m.volumes(at, &svc, raw, e)
	m.restartAndDeploy(at, raw, e)
	m.passthrough(at, raw, e)
	// What publishes nothing is a backing service: started first, and
	// not asked for a dev_port.
	e.Infra = e.published == 0
	if xm, ok := raw["x-maestro"].(map[string]any); ok {
		if infra, ok := xm["infrastructure"].(bool); ok {
			e.Infra = infra
		}
	}
	if e.Infra {
		m.note(at, "publishes no port: imported as [[infrastructure]], started first")
	}
	if err := m.neverWritten(at, e); err != nil {
		return nil, err
	}
	return e, nil
}

// rawService is the service as written (interpolated), with what it
// extends merged in.
func (m *mapper) rawService(name string) (map[string]any, error) {
	services, _ := m.f.raw["services"].(map[string]any)
	return m.extended(m.f, services, name, 0)
}

func (m *mapper) extended(f *composeFile, services map[string]any, name string, depth int) (map[string]any, error) {
	svc, _ := services[name].(map[string]any)
	ext, ok := svc["extends"]
	if !ok || depth > 10 {
		return svc, nil
	}
	var base map[string]any
	var err error
	baseFile, baseName := f, ""
	switch ext := ext.(type) {
	case string:
		baseName = ext
		base, err = m.extended(f, services, ext, depth+1)
	case map[string]any:
		from, _ := ext["service"].(string)
		file, _ := ext["file"].(string)
		baseName = from
		if file == "" {
			base, err = m.extended(f, services, from, depth+1)
			break
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(f.Dir, file)
		}
		other, rerr := readRaw(file, f)
		if rerr != nil {
			return nil, rerr
		}
		otherServices, _ := other.raw["services"].(map[string]any)
		baseFile = other
		base, err = m.extended(other, otherServices, from, depth+1)
	}
	if err != nil {
		return nil, err
	}
	f.inherit(baseFile, baseName, name, svc)
	out := mergeService(base, svc)
	delete(out, "extends")
	out["extends"] = ext // kept to say it was merged
	return out, nil
}

// inherit gives the service name of f what the strings of the service
// it extends (fromName of from) refer to, at its own paths, so that the
// secret detector and the environment rule see what the merge brings in.
// What the service says itself wins, as in mergeService.
func (f *composeFile) inherit(from *composeFile, fromName, name string, own map[string]any) {
	src, dst := "services."+fromName, "services."+name
	type entry struct {
		path  string
		vars  []string
		unset []string
		value string
	}
	var add []entry
	for p, vars := range from.vars {
		if !under(p, src) {
			continue
		}
		rest := p[len(src):]
		q := dst + rest
		if _, ok := f.vars[q]; ok {
			continue
		}
		k := strings.TrimLeft(rest, ".")
		k, _, _ = strings.Cut(k, ".")
		k, _, _ = strings.Cut(k, "[")
		if v, ok := own[k]; ok {
			_, isMap := v.(map[string]any)
			_, isList := v.([]any)
			if replaced[k] || !isMap && !isList {
				continue
			}
		}
		add = append(add, entry{q, vars, from.unset[p], from.values[p]})
	}
	for _, a := range add {
		f.vars[a.path], f.values[a.path] = a.vars, a.value
		if len(a.unset) > 0 {
			f.unset[a.path] = a.unset
		}
	}
}

// readRaw reads another compose file (one a service extends) as written,
// within the bounds, interpolated with f's variables.
func readRaw(path string, f *composeFile) (*composeFile, error) {
	o := &composeFile{Path: path, Shown: shownPath(path), Dir: filepath.Dir(path), env: f.env, blank: f.blank,
		vars: map[string][]string{}, unset: map[string][]string{}, values: map[string]string{}}
	root, pos, err := parseYAML(path, o.Shown)
	if err != nil {
		return nil, err
	}
	o.pos = pos
	var doc map[string]any
	if err := root.Decode(&doc); err != nil {
		return nil, catalog.Errors{{File: o.Shown, Msg: err.Error(), Hint: yamlHint}}
	}
	raw, err := o.interpolate(doc, "")
	if err != nil {
		return nil, err
	}
	o.raw, _ = raw.(map[string]any)
	return o, nil
}

// replaced are the keys whose lists a service replaces rather than adds
// to when it extends another.
var replaced = map[string]bool{"command": true, "entrypoint": true, "test": true}

// mergeService merges over onto base as compose's extends does for the
// keys the passthrough carries: mappings key by key, lists added to
// (command and entrypoint replaced), anything else replaced.
func mergeService(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		switch v := v.(type) {
		case map[string]any:
			if b, ok := out[k].(map[string]any); ok {
				out[k] = mergeService(b, v)
				continue
			}
		case []any:
			if b, ok := out[k].([]any); ok && !replaced[k] {
				merged := slices.Clone(b)
				for _, e := range v {
					if !slices.ContainsFunc(merged, func(x any) bool { return fmt.Sprint(x) == fmt.Sprint(e) }) {
						merged = append(merged, e)
					}
				}
				out[k] = merged
				continue
			}
		}
		out[k] = v
	}
	return out
}

// xMaestroKeys are the catalog keys a compose file may give import under
// a service's x-maestro extension: what compose cannot say.
var xMaestroKeys = []string{"title", "health", "checks", "prebuild", "prebuild_env", "prebuild_inputs",
	"prebuild_outputs", "port", "dev_port", "prod_port", "ports", "replicas", "infrastructure", "depends_on", "secrets"}

// xMaestro reads the x-maestro extension: catalog keys compose files
// cannot hold, with paths relative to the file.
func (m *mapper) xMaestro(at string, raw map[string]any, e *entry) error {
	v, ok := raw["x-maestro"]
	if !ok {
		return nil
	}
	at += ".x-maestro"
	xm, ok := v.(map[string]any)
	if !ok {
		return catalog.Errors{m.f.errorAt(at, "a mapping of catalog keys: title, health, checks, prebuild...", "x-maestro must be a mapping")}
	}
	var errs catalog.Errors
	bad := func(k, want string) {
		errs = append(errs, m.f.errorAt(at+"."+k, "write it as the catalog does (see the README's catalog reference)", "x-maestro.%s must be %s", k, want))
	}
	str := func(k string) (string, bool) {
		if v, ok := xm[k]; ok {
			s, isStr := v.(string)
			if !isStr {
				bad(k, "a string")
			}
			return s, isStr
		}
		return "", false
	}
	list := func(k string) []string {
		v, ok := xm[k]
		if !ok {
			return nil
		}
		l, isList := v.([]any)
		var out []string
		for _, x := range l {
			s, isStr := x.(string)
			if !isStr {
				isList = false
			}
			out = append(out, s)
		}
		if !isList {
			bad(k, "a list of strings")
		}
		return out
	}
	num := func(k string) int {
		v, ok := xm[k]
		if !ok {
			return 0
		}
		n, isInt := v.(int)
		if !isInt {
			bad(k, "a whole number")
		}
		return n
	}
	for _, k := range slices.Sorted(maps.Keys(xm)) {
		if !slices.Contains(xMaestroKeys, k) {
			errs = append(errs, m.f.errorAt(at+"."+k, "x-maestro takes: "+strings.Join(xMaestroKeys, ", "), "unknown x-maestro key %q", k))
		}
	}
	e.Title, _ = str("title")
	e.Health, _ = str("health")
	e.Prebuild = list("prebuild")
	for _, in := range list("prebuild_inputs") {
		if !filepath.IsAbs(in) {
			in = m.rebase(filepath.Join(m.f.Dir, in))
		}
		e.PrebuildInputs = append(e.PrebuildInputs, in)
	}
	e.PrebuildOutputs = list("prebuild_outputs")
	e.Port, e.DevPort, e.ProdPort, e.Replicas = num("port"), num("dev_port"), num("prod_port"), num("replicas")
	e.Secrets = list("secrets")
	if pe, ok := xm["prebuild_env"]; ok {
		e.PrebuildEnv = stringMap(pe)
		if e.PrebuildEnv == nil {
			bad("prebuild_env", "a mapping of strings")
		}
	}
	if v, ok := xm["ports"]; ok {
		p, isMap := v.(map[string]any)
		e.ExtraPorts = map[string]int{}
		for k, x := range p {
			n, isInt := x.(int)
			isMap = isMap && isInt
			e.ExtraPorts[k] = n
		}
		if !isMap {
			bad("ports", "a mapping of port columns to whole numbers")
		}
	}
	if c, ok := xm["checks"]; ok {
		l, isList := c.([]any)
		for _, x := range l {
			cm, isMap := x.(map[string]any)
			if !isMap {
				isList = false
				break
			}
			e.Checks = append(e.Checks, cm)
		}
		if !isList {
			bad("checks", "a list of mappings (the catalog's [[services.checks]] keys)")
		}
	}
	m.hostCommand(at, e)
	e.DependsOn = list("depends_on") // services of other files: settled with the file's own
	if _, ok := xm["infrastructure"]; ok {
		if _, isBool := xm["infrastructure"].(bool); !isBool {
			bad("infrastructure", "true or false")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// hostCommand takes x-maestro's prebuild and prebuild_env only when the
// operator said so: they run on this machine at the next build,
// unsandboxed and with the operator's environment, which compose never
// does with a file's contents. Without -prebuild they are a loss (so
// nothing is written without -lossy, and -lossy leaves them out); with
// it, a warning says what will run.
func (m *mapper) hostCommand(at string, e *entry) {
	if len(e.Prebuild) == 0 && len(e.PrebuildEnv) == 0 {
		return
	}
	key := at + ".prebuild"
	if len(e.Prebuild) == 0 {
		key = at + ".prebuild_env"
	}
	what := fmt.Sprintf("%q", e.Prebuild)
	for _, k := range slices.Sorted(maps.Keys(e.PrebuildEnv)) {
		what = fmt.Sprintf("%s=%q ", k, e.PrebuildEnv[k]) + what
	}
	if m.prebuild {
		m.warn(key, "a host command, imported because of -prebuild: %s runs on this machine, unsandboxed and with your environment, at the next build", what)
		return
	}
	m.loss(key, "a host command: %s would run on this machine, unsandboxed and with your environment, at every build, which compose never does with a file; read it, then import with -prebuild to take it (or write it into the catalog yourself)", what)
	e.Prebuild, e.PrebuildEnv, e.PrebuildInputs, e.PrebuildOutputs = nil, nil, nil, nil
}

func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			return nil
		}
		out[k] = s
	}
	return out
}

// buildKeys are the build keys the catalog carries.
var buildKeys = []string{"context", "dockerfile", "args", "target"}

func (m *mapper) build(at string, svc *types.ServiceConfig, e *entry) {
	if svc.Build == nil {
		e.Image = svc.Image
		return
	}
	b := svc.Build
	at += ".build"
	if svc.Image != "" {
		m.note("services."+svc.Name+".image", "image %q: the tool tags what it builds <project>/%s", svc.Image, e.Name)
	}
	if strings.Contains(b.Context, "://") || strings.HasPrefix(b.Context, "git@") {
		m.loss(at+".context", "a remote build context: the tool builds from a folder")
		e.Image = svc.Image
		return
	}
	e.Source = m.rebase(b.Context)
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if filepath.IsAbs(df) {
		if rel, err := filepath.Rel(b.Context, df); err == nil && filepath.IsLocal(rel) {
			df = rel
		}
	}
	switch {
	case b.DockerfileInline != "":
		m.loss(at+".dockerfile_inline", "the tool builds a Dockerfile in the build context, not one written inline")
	case filepath.IsAbs(df) || !filepath.IsLocal(df):
		m.loss(at+".dockerfile", "the Dockerfile %s is outside the build context: the tool sends the context alone", df)
	case df != "Dockerfile":
		e.Dockerfile = filepath.ToSlash(df)
	}
	rawBuild, _ := m.rawBuild(svc.Name)
	secretArgs := m.taintedKeys(at+".args", rawBuild["args"])
	for k, v := range b.Args {
		if secretArgs[k] {
			continue
		}
		if v == nil {
			m.loss(at+".args."+k, "build argument %s has no value: compose takes it from the shell at build time; give it one in build_args", k)
			continue
		}
		// A value from .env for an argument written without one is no
		// interpolated string: the detector sees it here.
		if shape := secretValue(*v); secretName(k) || shape != "" {
			m.loss(at+".args."+k, "build argument %s carries a secret: not imported, -lossy or not (a build argument stays in the image's history); use a build secret in the Dockerfile instead", k)
			continue
		}
		if e.BuildArgs == nil {
			e.BuildArgs = map[string]string{}
		}
		e.BuildArgs[k] = *v
	}
	e.BuildTarget = b.Target
	for _, k := range slices.Sorted(maps.Keys(rawBuild)) {
		if !slices.Contains(buildKeys, k) && k != "dockerfile_inline" && !strings.HasPrefix(k, "x-") {
			m.loss(at+"."+k, "the tool builds through the Engine API with context, dockerfile, args and target only")
		}
	}
}

func (m *mapper) rawBuild(name string) (map[string]any, bool) {
	raw, _ := m.rawService(name)
	b, ok := raw["build"].(map[string]any)
	return b, ok
}

// ports maps the first published port to port, prod_port and (later)
// dev_port; an unpublished service's port comes from expose.
func (m *mapper) ports(at string, svc *types.ServiceConfig, e *entry) {
	if m.taint(at + ".ports") {
		return
	}
	for i, p := range svc.Ports {
		pat := fmt.Sprintf("%s.ports[%d]", at, i)
		switch {
		case p.Published == "":
			m.loss(pat, "container port %d published on a random host port: the catalog publishes a chosen port per environment (give x-maestro dev_port/prod_port)", p.Target)
		case strings.Contains(p.Published, "-"):
			m.loss(pat, "a range of host ports: the catalog publishes one port per service")
		case p.Protocol != "" && p.Protocol != "tcp":
			m.loss(pat, "%s: the catalog publishes TCP ports", p.Protocol)
		case e.published != 0:
			m.loss(pat, "a second published port (%s:%d): the catalog publishes one port per service", p.Published, p.Target)
		default:
			n, err := strconv.Atoi(p.Published)
			if err != nil {
				m.loss(pat, "host port %q is not a number", p.Published)
				continue
			}
			e.published = n
			if e.Port == 0 {
				e.Port = int(p.Target)
			}
			if e.ProdPort == 0 {
				e.ProdPort = n
			}
			if p.HostIP != "" {
				m.note(pat, "address %s: each environment's bind decides where ports listen", p.HostIP)
			}
		}
	}
	if e.published == 0 && e.ProdPort != 0 {
		e.published = e.ProdPort // given by x-maestro
	}
	if e.Port == 0 && len(svc.Expose) > 0 {
		p := strings.SplitN(svc.Expose[0], "/", 2)[0]
		if n, err := strconv.Atoi(strings.SplitN(p, "-", 2)[0]); err == nil {
			e.Port = n
		}
	}
}

// environment splits the container's environment into env and secrets.
func (m *mapper) environment(at string, svc *types.ServiceConfig, raw map[string]any, e *entry) {
	for _, ef := range svc.EnvFiles {
		m.note(at+".env_file", "%s is read into env and secrets", m.rebase(ef.Path))
	}
	for _, a := range m.f.away[svc.Name] {
		if a.what == "env_file" {
			m.loss(a.key, "%s is outside the compose file's folder: import reads none of the operator's files, so its variables are not imported; copy what the service needs into the folder or into environment:", a.file)
		}
	}
	// The variables each value refers to, as written.
	// and those written without a value, which compose passes through
	// from the shell that runs it.
	refs := map[string][]string{}
	unset := map[string][]string{}
	passed := map[string]bool{}
	switch rawEnv := raw["environment"].(type) {
	case map[string]any:
		for k, v := range rawEnv {
			refs[k] = m.f.vars[at+".environment."+k]
			unset[k] = m.f.unset[at+".environment."+k]
			passed[k] = v == nil
		}
	case []any:
		for i, x := range rawEnv {
			if s, ok := x.(string); ok {
				k, _, hasValue := strings.Cut(s, "=")
				refs[k] = m.f.vars[fmt.Sprintf("%s.environment[%d]", at, i)]
				unset[k] = m.f.unset[fmt.Sprintf("%s.environment[%d]", at, i)]
				passed[k] = !hasValue
			}
		}
	}
	forced := map[string]bool{}
	for _, n := range e.Secrets {
		forced[n] = true
	}
	e.Secrets = nil
	for _, k := range slices.Sorted(maps.Keys(svc.Environment)) {
		v := svc.Environment[k]
		why := ""
		switch {
		case forced[k]:
			why = "x-maestro says so"
		case v == nil || passed[k]:
			why = "it has no value in the file: compose passes it through from the shell"
		case secretName(k):
			why = "its name says so"
		case len(unset[k]) > 0:
			why = fmt.Sprintf("its value comes from ${%s}, which neither .env nor .env.example beside the file sets: compose would take it from the shell", unset[k][0])
		default:
			for _, ref := range refs[k] {
				if m.secretVar(ref) != "" {
					why = fmt.Sprintf("its value comes from ${%s}", ref)
					break
				}
			}
			if why == "" {
				if shape := secretValue(*v); shape != "" {
					why = "its value looks like " + shape
				}
			}
		}
		if why == "" {
			if e.Env == nil {
				e.Env = map[string]string{}
			}
			e.Env[k] = *v
			continue
		}
		e.Secrets = append(e.Secrets, k)
		m.note(at+".environment."+k, "a secret (%s): its value is not written; give it through $%s or the environment's secrets file", why, k)
	}
}

// The tool's healthcheck timings, which the array form of healthcheck means
// in a compose file.
var fast = catalog.ExecHealthcheck

func (m *mapper) healthcheck(at string, raw map[string]any, e *entry) {
	hc, ok := raw["healthcheck"].(map[string]any)
	if !ok || m.taint(at+".healthcheck") {
		return
	}
	at += ".healthcheck"
	table := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(hc)) {
		switch k {
		case "test", "interval", "timeout", "retries", "start_period", "disable":
			v, err := tomlValue(hc[k])
			if err != nil {
				m.loss(at+"."+k, "%v", err)
				continue
			}
			table[k] = v
		case "start_interval":
			m.loss(at+"."+k, "docker-compose 1.29 does not know start_interval, and the rendered files must work with compose v1 and v2")
		default:
			if !strings.HasPrefix(k, "x-") {
				m.loss(at+"."+k, "not a healthcheck key compose knows")
			}
		}
	}
	// The array form, when the file says exactly what it means.
	if test, ok := table["test"].([]any); ok && len(test) > 1 && test[0] == "CMD" && len(table) == 5 &&
		table["interval"] == fast.Interval && table["timeout"] == fast.Timeout &&
		table["start_period"] == fast.StartPeriod && table["retries"] == int64(fast.Retries) {
		for _, a := range test[1:] {
			s, _ := a.(string)
			e.Healthcheck = append(e.Healthcheck, s)
		}
		e.hasHealth = true
		return
	}
	e.HealthcheckTable = table
	if off, _ := table["disable"].(bool); off {
		return
	}
	switch test := table["test"].(type) {
	case string:
		e.hasHealth = test != ""
	case []any:
		e.hasHealth = len(test) > 1 && test[0] != "NONE"
	}
}

func (m *mapper) dependsOn(at string, svc *types.ServiceConfig, raw map[string]any, e *entry) {
	// Only what depends_on says: compose-go adds the services of links
	// too, which are lost with links.
	written := map[string]bool{}
	switch d := raw["depends_on"].(type) {
	case []any:
		for _, n := range d {
			written[fmt.Sprint(n)] = true
		}
	case map[string]any:
		for n := range d {
			written[n] = true
		}
	}
	names := slices.Sorted(maps.Keys(svc.DependsOn))
	e.conditions = map[string]string{}
	for _, d := range names {
		if !written[d] {
			continue
		}
		dep := svc.DependsOn[d]
		dat := at + ".depends_on." + d
		if dep.Restart {
			m.loss(dat+".restart", "docker-compose 1.29 does not know restart in depends_on")
		}
		if !dep.Required {
			m.loss(dat+".required", "docker-compose 1.29 does not know required in depends_on: the dependency is required")
		}
		e.conditions[catalogName(d)] = dep.Condition
	}
	for _, d := range e.DependsOn { // from x-maestro: dependencies in other files
		if _, ok := e.conditions[d]; !ok {
			e.conditions[d] = ""
		}
	}
	e.DependsOn = nil
}

// networks are the shared network's business: options on a network the
// service joins are lost.
func (m *mapper) networks(at string, svc *types.ServiceConfig) {
	switch mode := svc.NetworkMode; mode {
	case "":
	case "host":
		// Refused rather than moved onto the shared network: a service
		// on the host's network is there for the host (its interfaces,
		// its metrics, ports it opens at will), which a bridge cannot
		// give, and nothing reaches it by name.
		m.loss(at+".network_mode", "network_mode host: the container would use the host's network, which the catalog does not give: every service joins the stack's shared network, reached by name on its published port; -lossy imports it onto that network (give it ports: for what it listens on)")
	default:
		m.loss(at+".network_mode", "network_mode %q: every service joins the stack's shared network, by which the services reach each other", mode)
	}
	var joined []string
	for _, n := range slices.Sorted(maps.Keys(svc.Networks)) {
		joined = append(joined, n)
		c := svc.Networks[n]
		nat := at + ".networks." + n
		if c != nil {
			if len(c.Aliases) > 0 {
				m.loss(nat+".aliases", "network aliases: on the shared network a service is reached by its name")
			}
			if c.Ipv4Address != "" || c.Ipv6Address != "" || len(c.LinkLocalIPs) > 0 || c.MacAddress != "" {
				m.loss(nat, "a fixed address: the shared network gives addresses itself")
			}
			if c.Priority != 0 || c.GatewayPriority != 0 || len(c.DriverOpts) > 0 {
				m.loss(nat, "network options: the shared network has none")
			}
		}
		top, ok := m.f.project.Networks[n]
		if !ok {
			continue
		}
		tat := "networks." + n
		switch {
		case bool(top.External):
			m.loss(tat, "an external network: the stack's services join its shared network only")
		case bool(top.Internal):
			m.loss(tat, "an internal network: the shared network reaches outside")
		case top.Driver != "" && top.Driver != "bridge":
			m.loss(tat, "driver %s: the shared network is a bridge (an overlay on a swarm)", top.Driver)
		case len(top.Ipam.Config) > 0 || len(top.DriverOpts) > 0 || top.EnableIPv6 != nil:
			m.loss(tat, "network settings: the shared network takes the defaults")
		}
	}
	if len(joined) > 1 || len(joined) == 1 && joined[0] != "default" {
		m.note(at+".networks", "joins the shared network instead of %s", strings.Join(joined, ", "))
	}
}

func (m *mapper) labels(at string, svc *types.ServiceConfig, e *entry) {
	raw, _ := m.rawService(svc.Name)
	secret := m.taintedKeys(at+".labels", raw["labels"])
	for _, a := range m.f.away[svc.Name] {
		if a.what == "label_file" {
			m.loss(a.key, "%s is outside the compose file's folder: import reads none of the operator's files, so its labels are not imported; give them under labels:", a.file)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(svc.Labels)) {
		switch {
		case secret[k]:
		case strings.HasPrefix(k, labels.Prefix) || strings.HasPrefix(k, labels.HelperPrefix):
			// The tool's own, on files it rendered: it sets them again.
		case strings.HasPrefix(k, labels.DockerPrefix):
			m.loss(at+".labels."+k, "com.docker.* labels are compose's and swarm's")
		default:
			if e.Labels == nil {
				e.Labels = map[string]string{}
			}
			e.Labels[k] = svc.Labels[k]
		}
	}
}

func (m *mapper) volumes(at string, svc *types.ServiceConfig, raw map[string]any, e *entry) {
	list, _ := raw["volumes"].([]any)
	for i, v := range list {
		vat := fmt.Sprintf("%s.volumes[%d]", at, i)
		if m.taint(vat) {
			continue
		}
		var resolved *types.ServiceVolumeConfig
		if i < len(svc.Volumes) {
			resolved = &svc.Volumes[i]
		}
		switch v := v.(type) {
		case string:
			parsed, err := format.ParseVolume(v)
			if err != nil || resolved == nil {
				m.loss(vat, "compose cannot read it: %v", err)
				continue
			}
			spec := v
			if parsed.Type == types.VolumeTypeBind {
				spec = m.bindPath(parsed.Source, resolved.Source) + v[len(parsed.Source):]
			} else if parsed.Source != "" && !m.plainVolume(parsed.Source) {
				continue
			}
			e.Volumes = append(e.Volumes, spec)
		case map[string]any:
			long, err := tomlValue(v)
			if err != nil {
				m.loss(vat, "%v", err)
				continue
			}
			lm := long.(map[string]any)
			if typ, _ := lm["type"].(string); typ == "bind" && resolved != nil {
				src, _ := lm["source"].(string)
				lm["source"] = m.bindPath(src, resolved.Source)
			} else if typ == "volume" {
				if src, _ := lm["source"].(string); src != "" && !m.plainVolume(src) {
					continue
				}
			}
			if p := catalog.CheckComposeKey("volumes", []any{lm}); p != nil {
				m.loss(vat, "%s", p.Msg)
				continue
			}
			e.Volumes = append(e.Volumes, lm)
		default:
			m.loss(vat, "neither a string nor a mapping")
		}
	}
}

// plainVolume reports whether the named volume is declared without
// settings the catalog cannot carry.
func (m *mapper) plainVolume(name string) bool {
	v, ok := m.f.project.Volumes[name]
	if !ok {
		return true
	}
	at := "volumes." + name
	switch {
	case bool(v.External):
		m.loss(at, "an external volume: the catalog declares the stack's own named volumes")
	case v.Driver != "" && v.Driver != "local" || len(v.DriverOpts) > 0:
		m.loss(at, "volume driver settings: the catalog declares plain named volumes")
	case len(v.Labels) > 0:
		m.loss(at, "volume labels: the catalog declares plain named volumes")
	case v.Name != "" && v.Name != m.f.name+"_"+name:
		m.loss(at, "a volume named %q: the catalog's volumes are named after the project", v.Name)
	default:
		return true
	}
	return false
}

// restartAndDeploy: restart defaults to the tool's unless-stopped, so a
// file that leaves it out says "no"; deploy's keys go to the passthrough
// but for those the tool writes itself.
func (m *mapper) restartAndDeploy(at string, raw map[string]any, e *entry) {
	put := func(k string, v any) {
		if e.Compose == nil {
			e.Compose = map[string]any{}
		}
		e.Compose[k] = v
	}
	switch r := raw["restart"].(type) {
	case nil:
		put("restart", "no") // compose's default; the tool's is unless-stopped
	case string:
		if m.taint(at + ".restart") {
			put("restart", "no")
		} else if r != "unless-stopped" {
			put("restart", r)
		}
	default:
		m.loss(at+".restart", "restart must be a string")
	}
	d, ok := raw["deploy"].(map[string]any)
	if !ok || m.taint(at+".deploy") {
		return
	}
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(d)) {
		dat := at + ".deploy." + k
		if k == "replicas" {
			if n, ok := d[k].(int); ok && n == 1 {
				continue // one container: what the catalog runs anyway
			}
			m.loss(dat, "compose runs %v containers of it; the catalog runs one per service outside swarm (replicas counts swarm tasks)", d[k])
			if n, ok := d[k].(int); ok {
				e.Replicas = n
			}
			continue
		}
		if hint, refused := catalog.DeployKeyHint(k); refused {
			m.loss(dat, "%s", hint)
			continue
		}
		v, err := tomlValue(d[k])
		if err != nil {
			m.loss(dat, "%v", err)
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return
	}
	if p := catalog.CheckComposeKey("deploy", out); p != nil {
		m.loss(at+".deploy"+dotted(p.Path), "%s", p.Msg)
		return
	}
	put("deploy", out)
}

func dotted(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return "." + strings.Join(path, ".")
}

// passthrough proposes every other key for compose = {...}, as written,
// unless the catalog refuses it or compose v1 or v2 would.
func (m *mapper) passthrough(at string, raw map[string]any, e *entry) {
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if handled[k] {
			continue
		}
		kat := at + "." + k
		if catalog.IsSetting(k) {
			if !m.taint(kat) {
				if err := e.Settings.Set(k, raw[k]); err != nil {
					m.loss(kat, "%v", err)
				}
			}
			continue
		}
		if hint, refused := catalog.ComposeKeyHint(k); refused {
			m.loss(kat, "%s", hint)
			continue
		}
		if m.taint(kat) {
			continue
		}
		v, err := tomlValue(raw[k])
		if err != nil {
			m.loss(kat, "%v", err)
			continue
		}
		if p := catalog.CheckComposeKey(k, v); p != nil {
			m.loss(kat+dotted(p.Path), "%s", p.Msg)
			continue
		}
		if e.Compose == nil {
			e.Compose = map[string]any{}
		}
		e.Compose[k] = v
	}
}

// tomlValue turns a YAML value into one TOML can hold.
func tomlValue(v any) (any, error) {
	return tree.Map(v, "", func(v any, _ string) (any, error) {
		switch v := v.(type) {
		case nil:
			return nil, fmt.Errorf("null: TOML has no null; give the key a value or leave it out")
		case string, bool, float64, int64:
			return v, nil
		case int:
			return int64(v), nil
		case uint64:
			return int64(v), nil
		}
		return nil, fmt.Errorf("a %T has no TOML form", v)
	})
}
