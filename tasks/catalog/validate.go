package catalog

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// DNSLabel is what a service name must be (a host name on the stack's
// network, a proxy alias), and ProjectName a compose project (or swarm
// stack) name: checked here, relied on by render and the proxy.
var (
	DNSLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	ProjectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

var (
	envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// containerEnvName is what a container's environment takes besides
	// variable names: dotted and dashed names, which Docker and compose
	// pass on and programs read (Elasticsearch's discovery.type). They
	// never reach a shell or a .env file, unlike secrets and build args.
	containerEnvName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

func (v *validator) build(raw *rawCatalog, abs string) *Catalog {
	cat := &Catalog{File: abs, Environments: map[string]*Environment{}}

	p := raw.Project
	cat.Project = Project{Name: p.Name, DeployDir: p.DeployDir, Network: p.Network}
	switch {
	case p.Name == "":
		v.add("project.name", `add name = "maestro" under [project]: it prefixes every container, network and volume`,
			"the project needs a name (missing key \"project.name\")")
	case !ProjectName.MatchString(p.Name):
		v.add("project.name", "lower-case letters, digits, '-' and '_', starting with a letter or digit",
			"invalid project name %q", p.Name)
	}
	if cat.Project.DeployDir == "" {
		cat.Project.DeployDir = "~/deployment"
	}
	cat.Project.DeployDir = v.path(cat.Project.DeployDir)
	if cat.Project.Network == "" {
		cat.Project.Network = "platform"
	} else if !DNSLabel.MatchString(cat.Project.Network) {
		v.add("project.network", "a DNS label: lower-case letters, digits and '-'", "invalid network name %q", p.Network)
	}

	seen := map[string]string{} // name -> key of first definition
	for i := range raw.Infrastructure {
		if s := v.service(&raw.Infrastructure[i], fmt.Sprintf("infrastructure[%d]", i), true, seen); s != nil {
			cat.Infrastructure = append(cat.Infrastructure, s)
		}
	}
	for i := range raw.Services {
		if s := v.service(&raw.Services[i], fmt.Sprintf("services[%d]", i), false, seen); s != nil {
			cat.Services = append(cat.Services, s)
		}
	}
	if len(raw.Services) == 0 && len(raw.Infrastructure) == 0 {
		v.errs = append(v.errs, &Error{File: v.file, Key: "services",
			Msg:  "the catalog declares no services",
			Hint: `add a [[services]] table with at least name, source and port; see services.toml in the repository for a full example`})
	}

	names := slices.Sorted(maps.Keys(raw.Environments))
	for _, n := range names {
		re := raw.Environments[n]
		cat.Environments[n] = v.environment(n, &re, cat, false)
	}
	if _, ok := cat.Environments["dev"]; !ok {
		local := "127.0.0.1"
		cat.Environments["dev"] = v.environment("dev", &rawEnv{Ports: "dev", Bind: &local}, cat, true)
	}

	v.sameTargets(v.targets)
	v.dependencies(cat)
	v.composeChecks(cat)
	v.oneShots(cat)
	for _, n := range slices.Sorted(maps.Keys(cat.Environments)) {
		v.portClashes(cat, cat.Environments[n])
	}
	return cat
}

// environment validates one environment. implicit is set for the dev
// environment Load adds when the file declares none.
func (v *validator) environment(name string, r *rawEnv, cat *Catalog, implicit bool) *Environment {
	key := "environments." + name
	e := &Environment{Name: name, Ports: r.Ports, Host: r.Host, Engine: r.Engine,
		KnownHosts: r.KnownHosts, Identity: r.Identity, KeepReleases: 5, Line: v.pos.line(key)}
	if !DNSLabel.MatchString(name) {
		v.add(key, "lower-case letters, digits and '-': the name is typed on the command line and names folders", "invalid environment name %q", name)
	}
	switch {
	case e.Ports == "" && name != "dev" && name != "prod":
		e.Ports = name
		v.add(key+".ports", `say which port column it publishes: ports = "dev" or ports = "prod"`, "missing key \"ports\"")
	case e.Ports == "":
		e.Ports = name
		fallthrough
	default:
		if v.columnExists(cat, e.Ports) || len(cat.Services) == 0 {
			// Infrastructure alone publishes nothing, by design.
			break
		}
		if implicit {
			v.add(key, `add dev_port to the services, or declare [environments.dev] with ports = "prod"`,
				"no service has a dev_port, so the default dev environment publishes nothing")
		} else {
			v.add(key+".ports", "known columns: "+strings.Join(columns(cat), ", ")+`; a column is dev_port, prod_port or a key of a service's ports table`,
				"no service has a %q port column", e.Ports)
		}
	}
	if e.Engine == "" {
		e.Engine = EngineCompose
	} else if _, ok := EngineKinds[e.Engine]; !ok {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(EngineKinds)) {
			kinds = append(kinds, strconv.Quote(k))
		}
		v.add(key+".engine", "use "+strings.Join(kinds, " or "), "unknown engine %q", e.Engine)
	}
	v.swarmModes(key, r, e)
	before := len(v.errs)
	tls := v.tlsFiles(key, r, e)
	var u *url.URL
	if e.Host != "" {
		u = v.host(key, e, tls)
	}
	v.nodes(key, r, e, u, tls) // nodes.go
	if tls && (e.Host == "" || u != nil && u.Scheme != "tcp") {
		v.tlsHost(key, r, e, u)
	}
	if e.Host != "" {
		switch {
		case r.Dir == "":
			v.add(key+".dir", `say where releases live on that host, e.g. dir = "/home/ec2-user/deployment"`, "a remote environment needs a dir")
		case hasDotDot(r.Dir):
			v.add(key+".dir", dotDotHint, "dir %q has a \"..\" element", r.Dir)
		case !path.IsAbs(r.Dir):
			v.add(key+".dir", `give an absolute path on that host, e.g. dir = "/home/ec2-user/deployment" (~ is not expanded there)`,
				"dir %q is not an absolute path", r.Dir)
		default:
			v.systemDir(key+".dir", path.Clean(r.Dir))
		}
		if r.Dir != "" {
			e.Dir = path.Clean(r.Dir)
		}
		if e.KnownHosts == "" {
			e.KnownHosts = "~/.ssh/known_hosts"
		}
	} else {
		e.Dir = cat.Project.DeployDir
		if r.Dir != "" {
			// Locally a relative dir is taken from the catalog's folder,
			// like every other path; the result is checked as on a host,
			// as promote bind-mounts it the same way.
			e.Dir = v.path(r.Dir)
			if hasDotDot(r.Dir) {
				v.add(key+".dir", dotDotHint, "dir %q has a \"..\" element", r.Dir)
			} else {
				v.systemDir(key+".dir", e.Dir)
			}
		}
	}
	if len(v.errs) == before {
		v.targets = append(v.targets, deployTarget{env: e, host: targetKey(u, tls), dirKey: key + ".dir", written: r.Dir != ""})
	}
	if r.Bind != nil {
		e.Bind = *r.Bind
		switch {
		case e.Bind != "" && net.ParseIP(e.Bind) == nil:
			v.add(key+".bind", `an IP address such as "127.0.0.1", or "" for every address`, "bind %q is not an IP address", e.Bind)
		case e.Bind != "" && e.Engine == EngineSwarm:
			// Swarm publishes on every address of the node and has no
			// field for an address: a bind would be dropped silently.
			v.add(key+".bind", `remove bind and restrict access with a firewall or security group`,
				"swarm publishes ports on every address of the node; bind %q cannot be honoured", e.Bind)
		}
	} else if !e.Remote() && e.Engine != EngineSwarm {
		e.Bind = "127.0.0.1"
	}
	if r.KeepReleases != nil {
		e.KeepReleases = *r.KeepReleases
		if e.KeepReleases < 1 || e.KeepReleases > 1000 {
			v.add(key+".keep_releases", "keep at least 1 release (the current one), at most 1000; remove the key for the default of 5",
				"keep_releases %d out of range 1-1000", e.KeepReleases)
		}
	}
	if e.KnownHosts != "" && v.optionPath(key+".known_hosts", "known_hosts", e.KnownHosts) {
		e.KnownHosts = v.path(e.KnownHosts)
	}
	if e.Identity != "" && v.optionPath(key+".identity", "identity", e.Identity) {
		e.Identity = v.path(e.Identity)
	}
	e.HealthTimeout = v.duration(key+".health_timeout", r.HealthTimeout, DefaultHealthTimeout)
	e.DrainTimeout = v.duration(key+".drain_timeout", r.DrainTimeout, DefaultDrainTimeout)
	v.environmentSecrets(key, r, e)
	return e
}

// swarmModes sets and checks endpoint_mode and publish_mode. They mean
// nothing to compose, so writing them on a compose environment is a
// mistake worth saying rather than a setting silently ignored.
func (v *validator) swarmModes(key string, r *rawEnv, e *Environment) {
	const (
		endpointHint = `use "vip" (the default: one virtual IP per service, balanced by the kernel's IPVS) or "dnsrr" (DNS answers with the tasks' addresses: no IPVS needed, suits an external load balancer)`
		publishHint  = `use "ingress" (the default: every node answers through swarm's routing mesh, which needs IPVS) or "host" (the port is bound on the node running the task)`
	)
	if e.Engine != EngineSwarm {
		if e.Engine != EngineCompose {
			return // the unknown engine is reported already
		}
		if r.EndpointMode != nil {
			v.add(key+".endpoint_mode", `add engine = "swarm" to this environment, or remove endpoint_mode: compose reaches services by container name`,
				"endpoint_mode applies to swarm environments only, and %q deploys with compose", e.Name)
		}
		if r.PublishMode != nil {
			v.add(key+".publish_mode", `add engine = "swarm" to this environment, or remove publish_mode: compose publishes ports on the host that runs the container`,
				"publish_mode applies to swarm environments only, and %q deploys with compose", e.Name)
		}
		return
	}
	e.EndpointMode, e.PublishMode = EndpointVIP, PublishIngress
	if r.EndpointMode != nil {
		e.EndpointMode = *r.EndpointMode
		if e.EndpointMode != EndpointVIP && e.EndpointMode != EndpointDNSRR {
			v.add(key+".endpoint_mode", endpointHint, "unknown endpoint_mode %q", e.EndpointMode)
		}
	}
	if r.PublishMode != nil {
		e.PublishMode = *r.PublishMode
		if e.PublishMode != PublishIngress && e.PublishMode != PublishHost {
			v.add(key+".publish_mode", publishHint, "unknown publish_mode %q", e.PublishMode)
		}
	}
	if e.EndpointMode == EndpointDNSRR && e.PublishMode == PublishIngress {
		// Swarm refuses the service at deploy time ("port published with
		// ingress mode can't be used with dnsrr mode"): say so now.
		k, how := key+".endpoint_mode", "publish_mode is not set, and defaults to \"ingress\""
		if r.PublishMode != nil {
			k, how = key+".publish_mode", `publish_mode = "ingress"`
		}
		v.add(k, `add publish_mode = "host" (each port is bound on the node running the task), or use endpoint_mode = "vip"`,
			`endpoint_mode = "dnsrr" cannot go with ingress-published ports (%s): swarm refuses that combination`, how)
	}
}

func (v *validator) columnExists(cat *Catalog, col string) bool {
	for _, s := range cat.All() {
		if _, ok := s.HostPort(col); ok {
			return true
		}
	}
	return false
}

func columns(cat *Catalog) []string {
	set := map[string]bool{}
	for _, s := range cat.All() {
		if s.DevPort != 0 {
			set["dev"] = true
		}
		if s.ProdPort != 0 {
			set["prod"] = true
		}
		for k := range s.ExtraPorts {
			set[k] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return []string{"(none)"}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (v *validator) service(r *rawService, key string, infra bool, seen map[string]string) *Service {
	s := &Service{Name: deref(r.Name), Written: r.Written, Settings: r.Settings,
		Port: deref(r.Port), DevPort: deref(r.DevPort), ProdPort: deref(r.ProdPort), ExtraPorts: r.Ports, Replicas: 1,
		Infra: infra, Line: v.pos.line(key)}
	const nameHint = "a DNS label: lower-case letters, digits and '-', at most 63 characters; it names the container, its folder and its host name on the network"
	switch {
	case r.Name == nil:
		v.add(key+".name", `add name = "my-service" to this entry; `+nameHint, "missing key \"name\"")
	case s.Name == "":
		v.add(key+".name", nameHint, "name is empty")
	case len(s.Name) > 63:
		v.add(key+".name", nameHint, "name %q is %d characters long, more than 63", s.Name, len(s.Name))
	case !DNSLabel.MatchString(s.Name):
		hint := nameHint
		if l := strings.ToLower(s.Name); l != s.Name && DNSLabel.MatchString(l) {
			hint = fmt.Sprintf("use lower case: name = %q", l)
		} else if strings.ContainsAny(s.Name, "/.\\") {
			hint = "no '/', '\\' or '.': " + nameHint
		}
		v.add(key+".name", hint, "invalid name %q", s.Name)
	default:
		if first, dup := seen[s.Name]; dup {
			v.add(key+".name", fmt.Sprintf("%s already uses it at line %d; names are unique across [[services]] and [[infrastructure]]",
				strings.TrimSuffix(first, ".name"), v.pos.line(first)), "duplicate name %q", s.Name)
		} else {
			seen[s.Name] = key + ".name"
		}
	}
	if s.Title == "" {
		s.Title = s.Name
	}
	label := "this entry"
	if s.Name != "" {
		label = fmt.Sprintf("%q", s.Name)
	}

	switch {
	case r.Source == "" && r.Image == "":
		v.add(key+".source", `add source = "path/to/build/context" (relative to the catalog file), or image = "repo:tag" to run a prebuilt image`,
			"%s has neither source nor image", label)
	case r.Source != "" && r.Image != "":
		v.add(key+".image", "remove one: source builds an image from a folder, image runs a prebuilt one", "%s has both source and image", label)
	case r.Source != "":
		s.Source = v.path(r.Source)
		if s.Dockerfile == "" {
			s.Dockerfile = "Dockerfile"
		}
		fi, err := os.Stat(s.Source)
		switch {
		case filepath.IsAbs(s.Dockerfile) || !filepath.IsLocal(s.Dockerfile):
			v.add(key+".dockerfile", "give a path relative to the source folder and inside it, e.g. dockerfile = \"Dockerfile\"",
				"dockerfile %q is outside the build context %s", s.Dockerfile, s.Source)
		case err != nil:
			v.add(key+".source", "the path is relative to the catalog file's folder; fix the path or create the folder",
				"source folder %s does not exist", s.Source)
		case !fi.IsDir():
			v.add(key+".source", "source is the build context: a folder holding the Dockerfile", "source %s is a file, not a folder", s.Source)
		default:
			if fi, err := os.Stat(filepath.Join(s.Source, s.Dockerfile)); err != nil || fi.IsDir() {
				v.add(key+".dockerfile", fmt.Sprintf("add %s to the source folder, or set dockerfile = \"...\" (relative to the source folder)", s.Dockerfile),
					"no Dockerfile at %s", filepath.Join(s.Source, s.Dockerfile))
			}
		}
	}

	published := r.DevPort != nil || r.ProdPort != nil || len(r.Ports) > 0
	if r.Port == nil {
		// An entry that publishes nothing and is never probed (a worker,
		// a queue) needs no port.
		if published || len(r.Checks) > 0 {
			v.add(key+".port", "add port = <number>: the port the process inside the container listens on (1-65535)",
				"%s has no port (missing key \"port\")", label)
		}
	} else {
		v.port(key+".port", "port", *r.Port, "")
	}
	for _, col := range []string{"dev", "prod"} {
		k, p := col+"_port", r.DevPort
		if col == "prod" {
			p = r.ProdPort
		}
		if p != nil {
			v.port(key+"."+k, k, *p, fmt.Sprintf("; to leave it unpublished in %s, remove %s", col, k))
		}
	}
	for _, col := range slices.Sorted(maps.Keys(s.ExtraPorts)) {
		ck := key + ".ports." + col
		switch {
		case col == "dev" || col == "prod":
			v.add(ck, fmt.Sprintf("write %s_port = %d instead", col, s.ExtraPorts[col]), "port column %q is reserved", col)
		case !DNSLabel.MatchString(col):
			v.add(ck, "a column name: lower-case letters, digits and '-', as named by an environment's ports", "invalid port column %q", col)
		}
		v.port(ck, "ports."+col, s.ExtraPorts[col], "")
	}

	if s.Health == "" {
		s.Health = "/health"
	} else if !strings.HasPrefix(s.Health, "/") {
		v.add(key+".health", fmt.Sprintf("an HTTP path starting with '/': health = %q", "/"+s.Health), "health path %q does not start with /", s.Health)
	}
	v.healthcheck(key+".healthcheck", &r.Healthcheck, s)
	v.dependsOn(key+".depends_on", &r.DependsOn, s)
	v.envTable(key+".env", s.Env, containerEnvName, containerEnvHint)
	v.labels(key+".labels", s.Labels)
	v.envTable(key+".build_args", s.BuildArgs, envVarName, varNameHint)
	if r.Source == "" {
		if len(r.BuildArgs) > 0 {
			v.add(key+".build_args", "build arguments go to the build of source: set source, or remove build_args", "build_args without source")
		}
		if r.BuildTarget != "" {
			v.add(key+".build_target", "a build target is a stage of source's Dockerfile: set source, or remove build_target", "build_target without source")
		}
	}
	v.composeTables(key, r, s)
	v.secrets(key, &r.Secrets, s)
	v.envTable(key+".prebuild_env", s.PrebuildEnv, envVarName, varNameHint)
	if len(s.Prebuild) > 0 {
		if r.Source == "" {
			v.add(key+".prebuild", "a pre-build command runs in the source folder: set source, or remove prebuild", "prebuild without source")
		}
		if strings.TrimSpace(s.Prebuild[0]) == "" {
			v.add(key+".prebuild", `an argument list such as ["go", "build", "-o", "app", "."]`, "empty prebuild command")
		}
		for _, in := range r.PrebuildInputs {
			s.PrebuildInputs = append(s.PrebuildInputs, v.path(in))
		}
		if len(s.PrebuildInputs) == 0 && s.Source != "" {
			s.PrebuildInputs = []string{s.Source}
		}
	}
	if r.Replicas != nil {
		s.Replicas = *r.Replicas
		if s.Replicas < 1 || s.Replicas > 100 {
			v.add(key+".replicas", "between 1 and 100; remove the key for the default of 1", "replicas %d out of range 1-100", s.Replicas)
		}
	}
	v.maxPerNode(key, r, s) // nodes.go
	for i := range r.Volumes {
		if vol, ok := v.volume(fmt.Sprintf("%s.volumes[%d]", key, i), &r.Volumes[i]); ok {
			s.Volumes = append(s.Volumes, vol)
			v.volIndex[s] = append(v.volIndex[s], i)
		}
	}
	names := map[string]string{}
	for i := range r.Checks {
		ckey := fmt.Sprintf("%s.checks[%d]", key, i)
		ck := v.check(&r.Checks[i], ckey, s)
		if first, dup := names[ck.Name]; dup {
			v.add(ckey+".name", fmt.Sprintf("the check at line %d has it too; give each check of a service its own name", v.pos.line(first)),
				"duplicate check name %q", ck.Name)
		} else {
			names[ck.Name] = ckey
		}
		s.Checks = append(s.Checks, ck)
	}
	return s
}

// port checks a host or container port that is written in the file.
func (v *validator) port(key, name string, p int, unpublish string) {
	if p < 1 || p > 65535 {
		v.add(key, "ports are 1-65535"+unpublish, "%s = %d is out of range", name, p)
	}
}

func (v *validator) envTable(key string, m map[string]string, name *regexp.Regexp, hint string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !name.MatchString(k) {
			v.add(key+"."+k, hint, "invalid variable name %q", k)
		}
		if strings.ContainsRune(m[k], 0) {
			v.add(key+"."+k, "remove the \\u0000: a process environment cannot carry a NUL byte", "value of %s holds a NUL byte", k)
		}
	}
}

func (v *validator) check(r *rawCheck, key string, s *Service) *Check {
	c := &Check{Name: r.Name, Kind: r.Kind, Path: r.Path, Status: r.Status,
		Contains: r.Contains, JSONField: r.JSONField, JSONEquals: r.JSONEquals,
		Retries: DefaultCheckRetries, Line: v.pos.line(key)}
	if c.Kind == "" {
		c.Kind = CheckHTTP
	} else if c.Kind != CheckHTTP && c.Kind != CheckNetwork {
		v.add(key+".kind", `use "http" (from the host) or "network" (from inside the stack's network)`, "unknown check kind %q", c.Kind)
	}
	if c.Path == "" {
		c.Path = s.Health
	} else if !strings.HasPrefix(c.Path, "/") {
		v.add(key+".path", `an HTTP path such as "/health"`, "path %q does not start with /", c.Path)
	}
	if c.Name == "" {
		c.Name = c.Kind + " " + c.Path
	}
	if c.Status == 0 {
		c.Status = 200
	} else if c.Status < 100 || c.Status > 599 {
		v.add(key+".status", "an HTTP status code, 100-599, e.g. 200", "status %d out of range", c.Status)
	}
	switch {
	case c.JSONField != "" && c.JSONEquals == "":
		v.add(key+".json_field", fmt.Sprintf(`add json_equals = "..." with the value %s must have`, c.JSONField), "json_field without json_equals")
	case c.JSONField == "" && c.JSONEquals != "":
		v.add(key+".json_equals", `add json_field = "..." naming the field (dotted path) to compare`, "json_equals without json_field")
	}
	c.Timeout = v.duration(key+".timeout", r.Timeout, DefaultCheckTimeout)
	if r.Retries != nil {
		c.Retries = *r.Retries
		if c.Retries < 0 || c.Retries > 10 {
			v.add(key+".retries", "retries after a failed attempt: 0-10", "retries %d out of range", c.Retries)
		}
	}
	return c
}

func (v *validator) dependencies(cat *Catalog) {
	all := cat.All()
	byName := map[string]*Service{}
	for _, s := range all {
		byName[s.Name] = s
	}
	keyAt := func(s *Service, i int) string {
		if keys := v.depKeys[s]; i < len(keys) {
			return keys[i]
		}
		return fmt.Sprintf("%s.depends_on[%d]", v.serviceKey(cat, s), i)
	}
	entryKey := func(s *Service, dep string) string {
		return keyAt(s, slices.Index(s.DependsOn, dep))
	}
	for _, s := range all {
		for i, d := range s.DependsOn {
			key := keyAt(s, i)
			switch {
			case d == s.Name:
				v.add(key, fmt.Sprintf("remove %q from its depends_on", d), "%s depends on itself", s.Name)
			case byName[d] == nil:
				hint := "known services: " + strings.Join(sortedNames(all), ", ")
				if m := didYouMean(d, sortedNames(all)); m != "" {
					hint = fmt.Sprintf("did you mean %q?", m)
				}
				v.add(key, hint, "%s depends on unknown service %q", s.Name, d)
			case slices.Index(s.DependsOn, d) < i:
				v.add(key, "list each dependency once", "%s lists %q twice in depends_on", s.Name, d)
			}
		}
	}
	// Depth-first search for cycles; report each cycle once, at its first member.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(s *Service)
	visit = func(s *Service) {
		color[s.Name] = grey
		stack = append(stack, s.Name)
		for _, d := range s.DependsOn {
			t := byName[d]
			if t == nil || t == s {
				continue
			}
			switch color[d] {
			case grey:
				i := len(stack) - 1
				for stack[i] != d {
					i--
				}
				cycle := append(append([]string{}, stack[i:]...), d)
				// Report at the first member's edge into the cycle.
				v.add(entryKey(byName[d], cycle[1]), "remove one of these depends_on entries: each service waits for the next to be healthy, so none would ever start",
					"dependency cycle %s", strings.Join(cycle, " -> "))
			case white:
				visit(t)
			}
		}
		stack = stack[:len(stack)-1]
		color[s.Name] = black
	}
	for _, s := range all {
		if color[s.Name] == white {
			visit(s)
		}
	}
}

func (v *validator) portClashes(cat *Catalog, e *Environment) {
	if !v.columnExists(cat, e.Ports) {
		return // already reported on the environment
	}
	used := map[int]*Service{}
	for _, s := range cat.All() {
		p, ok := s.HostPort(e.Ports)
		if !ok {
			if !s.Infra && !cat.OneShot(s.Name) { // a one-shot serves nothing
				v.add(v.serviceKey(cat, s), fmt.Sprintf("add %s = <host port> to it so that environment %q can publish it", columnKey(e.Ports), e.Name),
					"service %s has no %s, which environment %q publishes", s.Name, columnKey(e.Ports), e.Name)
			}
			continue
		}
		if other, clash := used[p]; clash {
			v.add(v.serviceKey(cat, s)+"."+columnKey(e.Ports),
				fmt.Sprintf("%s (line %d) already publishes %d; give each service its own host port", other.Name, v.pos.line(v.serviceKey(cat, other)+"."+columnKey(e.Ports)), p),
				"host port %d is used twice in environment %q (%s and %s)", p, e.Name, other.Name, s.Name)
			continue
		}
		used[p] = s
	}
}

func columnKey(col string) string {
	if col == "dev" || col == "prod" {
		return col + "_port"
	}
	return "ports." + col
}

func (v *validator) serviceKey(cat *Catalog, s *Service) string {
	if s.Infra {
		return fmt.Sprintf("infrastructure[%d]", indexOf(cat.Infrastructure, s))
	}
	return fmt.Sprintf("services[%d]", indexOf(cat.Services, s))
}

func indexOf(list []*Service, s *Service) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func sortedNames(list []*Service) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.Name
	}
	sort.Strings(out)
	return out
}
