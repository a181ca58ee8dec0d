package catalog

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	envVarName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	volumeSpec  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*:/[^:]*(:ro|:rw)?$`)
)

func (v *validator) build(raw *rawCatalog, abs string) *Catalog {
	cat := &Catalog{File: abs, Environments: map[string]*Environment{}}

	p := raw.Project
	cat.Project = Project{Name: p.Name, DeployDir: p.DeployDir, Network: p.Network}
	switch {
	case p.Name == "":
		v.add("project.name", `add [project] name = "maestro"`, "the project needs a name (the compose project name)")
	case !projectName.MatchString(p.Name):
		v.add("project.name", "lower-case letters, digits, '-' and '_', starting with a letter or digit",
			"invalid project name %q", p.Name)
	}
	if cat.Project.DeployDir == "" {
		cat.Project.DeployDir = "~/deployment"
	}
	cat.Project.DeployDir = v.path(cat.Project.DeployDir)
	if cat.Project.Network == "" {
		cat.Project.Network = "platform"
	} else if !dnsLabel.MatchString(cat.Project.Network) {
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
	if len(raw.Services) == 0 {
		v.errs = append(v.errs, &Error{File: v.file, Key: "services",
			Msg: "the catalog declares no services", Hint: "add at least one [[services]] table"})
	}

	names := make([]string, 0, len(raw.Environments))
	for n := range raw.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		re := raw.Environments[n]
		cat.Environments[n] = v.environment(n, &re, cat)
	}
	if _, ok := cat.Environments["dev"]; !ok {
		local := "127.0.0.1"
		cat.Environments["dev"] = v.environment("dev", &rawEnv{Ports: "dev", Bind: &local}, cat)
	}

	v.dependencies(cat)
	for _, n := range names {
		v.portClashes(cat, cat.Environments[n])
	}
	return cat
}

func (v *validator) environment(name string, r *rawEnv, cat *Catalog) *Environment {
	key := "environments." + name
	e := &Environment{Name: name, Ports: r.Ports, Host: r.Host, Engine: r.Engine,
		KnownHosts: r.KnownHosts, Identity: r.Identity, KeepReleases: 5, Line: v.pos.line(key)}
	if !dnsLabel.MatchString(name) {
		v.add(key, "lower-case letters, digits and '-'", "invalid environment name %q", name)
	}
	if e.Ports == "" {
		e.Ports = name
		if name != "dev" && name != "prod" {
			v.add(key+".ports", `say which port column it publishes: ports = "dev" or "prod"`, "missing key \"ports\"")
		}
	}
	if !v.columnExists(cat, e.Ports) {
		v.add(key+".ports", "known columns: "+strings.Join(columns(cat), ", "),
			"no service has a %q port column", e.Ports)
	}
	if e.Engine == "" {
		e.Engine = EngineCompose
	} else if e.Engine != EngineCompose && e.Engine != EngineSwarm {
		v.add(key+".engine", `use "compose" or "swarm"`, "unknown engine %q", e.Engine)
	}
	if e.Host != "" {
		u, err := url.Parse(e.Host)
		switch {
		case err != nil:
			v.add(key+".host", "write ssh://user@host[:port], unix:///path or tcp://host:port", "invalid host %q: %v", e.Host, err)
		case u.Scheme != "ssh" && u.Scheme != "unix" && u.Scheme != "tcp":
			v.add(key+".host", "write ssh://user@host[:port], unix:///path or tcp://host:port", "unsupported host scheme %q", u.Scheme)
		case u.Scheme != "unix" && u.Host == "":
			v.add(key+".host", "write ssh://user@host[:port]", "host %q names no machine", e.Host)
		}
		if r.Dir == "" {
			v.add(key+".dir", `say where releases live on that host, e.g. dir = "/home/ec2-user/deployment"`, "a remote environment needs a dir")
		}
		e.Dir = r.Dir
	} else {
		e.Dir = cat.Project.DeployDir
		if r.Dir != "" {
			e.Dir = v.path(r.Dir)
		}
	}
	if r.Bind != nil {
		e.Bind = *r.Bind
	} else if !e.Remote() {
		e.Bind = "127.0.0.1"
	}
	if r.KeepReleases != nil {
		e.KeepReleases = *r.KeepReleases
		if e.KeepReleases < 1 || e.KeepReleases > 1000 {
			v.add(key+".keep_releases", "keep at least 1 release (the current one)", "keep_releases %d out of range 1-1000", e.KeepReleases)
		}
	}
	if e.KnownHosts != "" {
		e.KnownHosts = v.path(e.KnownHosts)
	}
	if e.Identity != "" {
		e.Identity = v.path(e.Identity)
	}
	e.HealthTimeout = v.duration(key+".health_timeout", r.HealthTimeout, 2*time.Minute)
	return e
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

func (v *validator) service(r *rawService, key string, infra bool, seen map[string]string) *Service {
	s := &Service{Name: r.Name, Title: r.Title, Dockerfile: r.Dockerfile, Image: r.Image,
		Port: r.Port, DevPort: r.DevPort, ProdPort: r.ProdPort, ExtraPorts: r.Ports,
		Health: r.Health, Healthcheck: r.Healthcheck, DependsOn: r.DependsOn,
		Env: r.Env, Secrets: r.Secrets, Prebuild: r.Prebuild, PrebuildEnv: r.PrebuildEnv,
		PrebuildOutputs: r.PrebuildOutputs, Replicas: 1, Volumes: r.Volumes,
		Infra: infra, Line: v.pos.line(key)}
	switch {
	case s.Name == "":
		v.add(key+".name", `add name = "my-service"`, "missing key \"name\"")
	case !dnsLabel.MatchString(s.Name):
		v.add(key+".name", "a DNS label: lower-case letters, digits and '-', at most 63, no '/' or '.'", "invalid name %q", s.Name)
	default:
		if first, dup := seen[s.Name]; dup {
			v.add(key+".name", "first defined at line "+fmt.Sprint(v.pos.line(first)), "duplicate name %q", s.Name)
		} else {
			seen[s.Name] = key + ".name"
		}
	}
	if s.Title == "" {
		s.Title = s.Name
	}

	switch {
	case r.Source == "" && r.Image == "":
		v.add(key+".source", "give the build context folder, or image = \"...\" for a prebuilt image", "missing key \"source\"")
	case r.Source != "" && r.Image != "":
		v.add(key+".image", "a service is either built from source or run from an image", "both source and image are set")
	case r.Source != "":
		s.Source = v.path(r.Source)
		if s.Dockerfile == "" {
			s.Dockerfile = "Dockerfile"
		}
		if fi, err := os.Stat(s.Source); err != nil || !fi.IsDir() {
			v.add(key+".source", "the path is relative to the catalog file; check it exists", "source folder %s not found", s.Source)
		} else if fi, err := os.Stat(filepath.Join(s.Source, s.Dockerfile)); err != nil || fi.IsDir() {
			v.add(key+".dockerfile", "add a Dockerfile to the source folder or set dockerfile = \"...\"", "no Dockerfile at %s", filepath.Join(s.Source, s.Dockerfile))
		}
		if filepath.IsAbs(s.Dockerfile) || strings.HasPrefix(filepath.Clean(s.Dockerfile), "..") {
			v.add(key+".dockerfile", "give a path inside the source folder", "dockerfile %q leaves the build context", s.Dockerfile)
		}
	}

	v.port(key+".port", s.Port, true)
	v.port(key+".dev_port", s.DevPort, false)
	v.port(key+".prod_port", s.ProdPort, false)
	for col, p := range s.ExtraPorts {
		if !dnsLabel.MatchString(col) {
			v.add(key+".ports."+col, "a column name: lower-case letters, digits and '-'", "invalid port column %q", col)
		}
		v.port(key+".ports."+col, p, true)
	}

	if s.Health == "" {
		s.Health = "/health"
	} else if !strings.HasPrefix(s.Health, "/") {
		v.add(key+".health", `an HTTP path such as "/health"`, "health path %q does not start with /", s.Health)
	}
	if len(r.Healthcheck) > 0 && strings.TrimSpace(r.Healthcheck[0]) == "" {
		v.add(key+".healthcheck", `an argument list such as ["/app", "-healthcheck"]`, "empty healthcheck command")
	}
	v.envTable(key+".env", s.Env)
	v.envTable(key+".secrets", s.Secrets)
	v.envTable(key+".prebuild_env", s.PrebuildEnv)
	for k := range s.Secrets {
		if _, both := s.Env[k]; both {
			v.add(key+".secrets."+k, "keep it in secrets only", "%s is both in env and in secrets", k)
		}
	}
	if len(s.Prebuild) > 0 {
		if s.Source == "" && r.Source == "" {
			v.add(key+".prebuild", "a pre-build command runs in the source folder", "prebuild without source")
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
			v.add(key+".replicas", "between 1 and 100", "replicas %d out of range", s.Replicas)
		}
	}
	for i, vol := range s.Volumes {
		if !volumeSpec.MatchString(vol) {
			v.add(fmt.Sprintf("%s.volumes", key), `write "name:/path/in/container"`, "invalid volume %q (entry %d)", vol, i+1)
		}
	}
	names := map[string]bool{}
	for i := range r.Checks {
		ck := v.check(&r.Checks[i], fmt.Sprintf("%s.checks[%d]", key, i), s)
		if names[ck.Name] {
			v.add(fmt.Sprintf("%s.checks[%d].name", key, i), "give each check of a service its own name", "duplicate check name %q", ck.Name)
		}
		names[ck.Name] = true
		s.Checks = append(s.Checks, ck)
	}
	return s
}

func (v *validator) port(key string, p int, required bool) {
	if p == 0 && !required {
		return
	}
	if p == 0 {
		v.add(key, "the port the container listens on, 1-65535", "missing key %q", key[strings.LastIndexByte(key, '.')+1:])
		return
	}
	if p < 1 || p > 65535 {
		v.add(key, "ports are 1-65535", "port %d out of range", p)
	}
}

func (v *validator) envTable(key string, m map[string]string) {
	for k, val := range m {
		if !envVarName.MatchString(k) {
			v.add(key+"."+k, "letters, digits and '_', not starting with a digit", "invalid variable name %q", k)
		}
		if strings.ContainsRune(val, 0) {
			v.add(key+"."+k, "remove the NUL byte", "value of %s holds a NUL byte", k)
		}
	}
}

func (v *validator) check(r *rawCheck, key string, s *Service) *Check {
	c := &Check{Name: r.Name, Kind: r.Kind, Path: r.Path, Status: r.Status,
		Contains: r.Contains, JSONField: r.JSONField, JSONEquals: r.JSONEquals,
		Retries: 2, Line: v.pos.line(key)}
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
		v.add(key+".status", "an HTTP status, 100-599", "status %d out of range", c.Status)
	}
	if (c.JSONField == "") != (c.JSONEquals == "") {
		v.add(key+".json_field", "set json_field and json_equals together", "json_field and json_equals go together")
	}
	c.Timeout = v.duration(key+".timeout", r.Timeout, 2*time.Second)
	if r.Retries != nil {
		c.Retries = *r.Retries
		if c.Retries < 0 || c.Retries > 10 {
			v.add(key+".retries", "0-10", "retries %d out of range", c.Retries)
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
	keyOf := func(s *Service) string {
		if s.Infra {
			return fmt.Sprintf("infrastructure[%d].depends_on", indexOf(cat.Infrastructure, s))
		}
		return fmt.Sprintf("services[%d].depends_on", indexOf(cat.Services, s))
	}
	for _, s := range all {
		for _, d := range s.DependsOn {
			switch {
			case d == s.Name:
				v.add(keyOf(s), "remove it", "%s depends on itself", s.Name)
			case byName[d] == nil:
				hint := "known: " + strings.Join(sortedNames(all), ", ")
				if m := didYouMean(d, sortedNames(all)); m != "" {
					hint = fmt.Sprintf("did you mean %q?", m)
				}
				v.add(keyOf(s), hint, "%s depends on unknown service %q", s.Name, d)
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
				v.add(keyOf(byName[d]), "break the cycle: a service cannot wait for itself", "dependency cycle %s", strings.Join(cycle, " -> "))
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
	used := map[int]*Service{}
	for _, s := range cat.All() {
		p, ok := s.HostPort(e.Ports)
		if !ok {
			if !s.Infra && v.columnExists(cat, e.Ports) {
				v.add(v.serviceKey(cat, s), fmt.Sprintf("add %s so environment %q can publish it", columnKey(e.Ports), e.Name),
					"service %s has no %q port", s.Name, e.Ports)
			}
			continue
		}
		if other, clash := used[p]; clash {
			v.add(v.serviceKey(cat, s)+"."+columnKey(e.Ports), fmt.Sprintf("%s already publishes %d; give each service its own port", other.Name, p),
				"host port %d used twice in environment %q (%s and %s)", p, e.Name, other.Name, s.Name)
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
