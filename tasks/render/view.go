package render

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/labels"
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
	// Settings are the compose keys the catalog carries as written.
	catalog.Settings
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
	// Health are the timings of an exec-form healthcheck in this file
	// (catalog.ExecHealthcheck).
	Health healthTimings
}

type healthTimings struct {
	Interval, Timeout, StartPeriod string
	Retries                        int
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

func (r *renderer) service(s *catalog.Service) (*svcView, error) {
	v := &svcView{Name: s.Name, Image: r.cat.ImageRef(s), svc: s, Replicas: max(s.Replicas, 1),
		Healthcheck: s.Healthcheck, Volumes: s.Volumes, MaxPerNode: s.MaxReplicasPerNode, compose: s.ComposeFor(r.env.Name),
		Settings: s.Settings}
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
	hc := catalog.ExecHealthcheck
	bv := blockView{Svc: v, Stack: stack, Network: r.cat.Project.Network,
		Health: healthTimings{Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, Retries: hc.Retries}}
	if stack {
		bv.EndpointMode, bv.PublishMode = swarmModes(r.env)
		bv.Health.Interval = hc.StackInterval
	}
	return bv
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
		out = append(out, depView{Name: d, Condition: r.cat.Condition(v.svc, d)})
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
