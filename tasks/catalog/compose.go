package catalog

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	dockertypes "github.com/docker/cli/cli/compose/types"

	"github.com/maestro-platform/deploy/internal/composeschema"
	"github.com/maestro-platform/deploy/internal/tree"
)

// The compose passthrough: whatever a compose service says that the
// catalog does not model is written under the service's compose key, and
// per environment under compose_env, and rendered as it is:
//
//	compose = { command = ["serve", "--port", "8080"], user = "1000", extra_hosts = ["db.local:10.0.0.5"] }
//	compose_env = { demo = { logging = { driver = "json-file", options = { max-size = "10m" } } } }
//
// Load checks every service's keys as compose v2 (compose-go's schema and
// loader), compose v1 (docker-compose 1.29's schema) and, for swarm
// environments, docker stack deploy (the legacy 3.8 schema) would, and
// reports each problem at its line.

// composeKey is what the catalog says about a compose service key that
// cannot be written under compose.
type composeKey struct {
	// use is the catalog key that says it instead; "" when the catalog
	// cannot carry it at all.
	use string
	// why says what stands in the way, or how the catalog key differs.
	why string
}

// ComposeKeys are the compose service keys that cannot be written under
// compose: those the catalog models in its own way (use its keys instead)
// and those it cannot carry (a reason each); Settings' keys are refused
// too (refusedKey). Package importer refuses the same.
var ComposeKeys = map[string]composeKey{
	"image":          {use: "image", why: `or source to build one`},
	"build":          {use: "source, dockerfile, build_args and build_target", why: "the tool builds the image itself"},
	"ports":          {use: "port, dev_port, prod_port and ports", why: "the host port is chosen per environment"},
	"environment":    {use: "env and secrets", why: "secret values stay out of compose files"},
	"env_file":       {use: "env and secrets", why: "mage import reads env files into them; a file beside the catalog would not reach a remote host"},
	"healthcheck":    {use: "healthcheck", why: "its table form takes compose's keys"},
	"depends_on":     {use: "depends_on", why: "its table form takes compose's conditions"},
	"networks":       {use: "project.network", why: "every service joins the stack's shared network"},
	"labels":         {use: "labels", why: "the tool adds its own io.maestro.* labels beside them"},
	"volumes":        {use: "volumes", why: "it takes named volumes, bind mounts and the long syntax"},
	"x-maestro":      {use: "the service's own catalog keys", why: "x-maestro is how a compose file gives catalog keys to mage import"},
	"network_mode":   {why: "every service joins the stack's shared network, by which the services reach each other"},
	"container_name": {why: "containers are named by the project, and promotion starts a service's new container beside its old one, which one fixed name forbids"},
	"scale":          {use: "replicas", why: "compose environments run one container per service; replicas counts swarm tasks"},
	"profiles":       {why: "every catalog service is deployed and waited healthy: a service in a profile would never start"},
	"extends":        {why: "write the merged keys (mage import resolves extends)"},
	"secrets":        {use: "secrets", why: "compose's file secrets need top-level definitions the catalog does not hold; the catalog's secrets reach the container's environment"},
	"configs":        {why: "compose configs need top-level definitions the catalog does not hold; mount the file with volumes"},
	"links":          {use: "depends_on", why: "services reach each other by name on the shared network"},
	"external_links": {why: "services outside the stack are not on its network"},
	"volumes_from":   {use: "volumes", why: "name the volumes themselves: each service is also rendered into a compose file of its own"},
}

// deployKeys are the keys of compose's deploy that the tool writes itself
// into stack files.
var deployKeys = map[string]composeKey{
	"replicas":        {use: "replicas", why: "compose environments run one container per service"},
	"mode":            {why: "the tool deploys replicated services, replicas of them"},
	"endpoint_mode":   {use: "the environment's endpoint_mode", why: "it is the same for every service of a swarm"},
	"update_config":   {why: "the tool rolls out one task at a time and rolls a failed update back"},
	"rollback_config": {why: "the tool rolls back one task at a time"},
	"restart_policy":  {use: "compose's restart", why: "swarm tasks restart by the tool's restart_policy"},
}

// ComposeKeyHint says what to do about a compose key the catalog refuses
// under compose, and whether it refuses it ("" when it does not).
func ComposeKeyHint(key string) (string, bool) {
	if k, ok := refusedKey(key); ok {
		return k.hint(), true
	}
	return "", false
}

// refusedKey is what the catalog says about a compose key it refuses under
// compose: one of ComposeKeys, or one of Settings, which the catalog
// carries under the same name.
func refusedKey(key string) (composeKey, bool) {
	if k, ok := ComposeKeys[key]; ok {
		return k, true
	}
	if IsSetting(key) {
		return composeKey{use: key, why: "the catalog checks its value"}, true
	}
	return composeKey{}, false
}

// DeployKeyHint is ComposeKeyHint for a key under deploy.
func DeployKeyHint(key string) (string, bool) {
	if k, ok := deployKeys[key]; ok {
		return k.hint(), true
	}
	return "", false
}

func (k composeKey) hint() string {
	if k.use == "" {
		return "the catalog cannot carry it: " + k.why
	}
	return fmt.Sprintf("use the catalog's %s: %s", k.use, k.why)
}

// StackDropped are compose keys that stack files leave out although the
// catalog carries them: docker stack deploy ignores them, with nothing
// lost. Render names them in a comment of the stack file.
var StackDropped = map[string]string{
	"restart": "swarm restarts tasks by the stack's restart_policy",
	"expose":  "a swarm service is reachable on any port on its network",
}

// plainError names the key of a value compose has no use for.
type plainError struct{ key, msg string }

func (e *plainError) Error() string { return e.msg }

// plain turns a value decoded from TOML into a compose value: strings,
// numbers, booleans, lists and mappings. TOML dates have no compose
// meaning; the error names the key where one is written.
func plain(v any, key string) (any, error) {
	return tree.Map(v, key, func(v any, key string) (any, error) {
		switch v := v.(type) {
		case string, bool, int64, float64:
			return v, nil
		case int:
			return int64(v), nil
		case time.Time:
			return nil, &plainError{key, "a TOML date, which compose has no use for"}
		}
		return nil, &plainError{key, fmt.Sprintf("a %T, which compose has no use for", v)}
	})
}

// plainTable is plain for a table, reporting a problem at its key.
func (v *validator) plainTable(key string, m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p, err := plain(m[k], key+"."+k)
		if pe, ok := err.(*plainError); ok {
			v.add(pe.key, `write a string, number, boolean, array or table; a date goes in double quotes: "1979-05-27"`, "%s is %s", leafName(pe.key), pe.msg)
			continue
		}
		out[k] = p
	}
	return out
}

// composeTables checks the compose and compose_env tables of one entry
// and sets them on s: refused keys out, values made plain.
func (v *validator) composeTables(key string, r *rawService, s *Service) {
	s.Compose = v.composeTable(key+".compose", r.Compose)
	for _, env := range slices.Sorted(maps.Keys(r.ComposeEnv)) {
		t := v.composeTable(key+".compose_env."+env, r.ComposeEnv[env])
		if s.ComposeEnv == nil {
			s.ComposeEnv = map[string]map[string]any{}
		}
		s.ComposeEnv[env] = t
	}
}

func (v *validator) composeTable(key string, m map[string]any) map[string]any {
	t := v.plainTable(key, m)
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if ck, ok := refusedKey(k); ok {
			v.add(key+"."+k, ck.hint(), "%s cannot be written under compose", k)
			delete(t, k)
			continue
		}
		if k != "deploy" {
			continue
		}
		d, ok := t[k].(map[string]any)
		if !ok {
			continue // the schema says what deploy must be
		}
		for _, dk := range slices.Sorted(maps.Keys(d)) {
			if ck, ok := deployKeys[dk]; ok {
				v.add(key+".deploy."+dk, ck.hint(), "deploy.%s is the tool's own", dk)
				delete(d, dk)
			}
		}
		if p, ok := d["placement"].(map[string]any); ok {
			if _, ok := p["max_replicas_per_node"]; ok {
				v.add(key+".deploy.placement.max_replicas_per_node", "use the catalog's max_replicas_per_node: the tool checks it against the nodes and replicas",
					"deploy.placement.max_replicas_per_node is the tool's own")
				delete(p, "max_replicas_per_node")
			}
		}
	}
	if len(t) == 0 && m != nil {
		return map[string]any{}
	}
	return t
}

// composeChecks checks, for every entry, what it renders into a compose
// service beyond the tool's own keys (the compose passthrough, the table
// forms of healthcheck and volumes, labels) as compose v2 and v1 would,
// for each environment whose keys differ, and as docker stack deploy
// would for swarm environments. It runs once environments are known.
func (v *validator) composeChecks(cat *Catalog) {
	for _, s := range cat.All() {
		v.composeCheck(cat, v.serviceKey(cat, s), s)
	}
}

func (v *validator) composeCheck(cat *Catalog, key string, s *Service) {
	for _, env := range slices.Sorted(maps.Keys(s.ComposeEnv)) {
		if _, ok := cat.Environments[env]; !ok {
			v.add(key+".compose_env."+env, "known environments: "+joinKeys(cat.Environments), "no environment %q", env)
		}
	}
	if len(s.Compose) == 0 && len(s.ComposeEnv) == 0 && s.HealthcheckOptions == nil && len(s.Labels) == 0 && !hasLongVolume(s) {
		return // nothing beyond what render itself writes and checks
	}
	seen := map[string]bool{}
	report := func(e *Error) {
		id := e.Key + "\x00" + e.Msg
		if !seen[id] {
			seen[id] = true
			v.errs = append(v.errs, e)
		}
	}
	// The keys as written, then each environment that changes them or
	// deploys to a swarm.
	v.checkService(cat, key, s, "", report)
	for _, name := range slices.Sorted(maps.Keys(cat.Environments)) {
		e := cat.Environments[name]
		if _, own := s.ComposeEnv[name]; own || e.Engine == EngineSwarm {
			v.checkService(cat, key, s, name, report)
		}
	}
}

func hasLongVolume(s *Service) bool {
	return slices.ContainsFunc(s.Volumes, func(vol Volume) bool { return vol.Long != nil })
}

// origin maps a place in the checked service mapping back to the catalog.
type origin struct {
	key string // services[2]
	env string // the environment whose compose_env keys replace compose's
	s   *Service
	// volIndex maps an index of s.Volumes to the file's.
	volIndex []int
}

// catalogKey is the catalog key that holds path, a place in the service
// mapping ("logging", "options", "max-size").
func (o origin) catalogKey(path []string) string {
	if len(path) == 0 {
		return o.key
	}
	top := path[0]
	var b strings.Builder
	switch {
	case top == "healthcheck" || top == "volumes" || top == "labels":
		b.WriteString(o.key + "." + top)
	case o.env != "" && hasKey(o.s.ComposeEnv[o.env], top):
		b.WriteString(o.key + ".compose_env." + o.env + "." + top)
	case top == "image":
		return o.key
	default:
		b.WriteString(o.key + ".compose." + top)
	}
	for i, p := range path[1:] {
		if n, err := strconv.Atoi(p); err == nil {
			if i == 0 && top == "volumes" && n < len(o.volIndex) {
				p = strconv.Itoa(o.volIndex[n])
			}
			b.WriteString("[" + p + "]")
		} else {
			b.WriteString("." + p)
		}
	}
	return b.String()
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// ServiceMapping is what s renders into a compose service in environment
// env ("" = as written) beyond the keys render writes itself: the compose
// passthrough for env, the table form of healthcheck, labels and volumes,
// as plain compose values. Render writes these keys; Load checks them.
func (s *Service) ServiceMapping(env string) map[string]any {
	m := map[string]any{}
	for k, val := range s.ComposeFor(env) {
		m[k] = val
	}
	if s.HealthcheckOptions != nil {
		m["healthcheck"] = s.HealthcheckOptions
	}
	if len(s.Labels) > 0 {
		l := map[string]any{}
		for k, val := range s.Labels {
			l[k] = val
		}
		m["labels"] = l
	}
	if len(s.Volumes) > 0 {
		vols := make([]any, len(s.Volumes))
		for i, vol := range s.Volumes {
			vols[i] = vol.Value()
		}
		m["volumes"] = vols
	}
	return m
}

// checkService checks s's service mapping for env: as written when env
// is "", else the keys env's compose_env gives, and for a swarm
// environment the whole mapping as its stack file holds it. Each key is
// checked on its own, so that every key's problem is reported at once.
func (v *validator) checkService(cat *Catalog, key string, s *Service, env string, report func(*Error)) {
	o := origin{key: key, env: env, s: s, volIndex: v.volIndex[s]}
	name := s.Name
	if !DNSLabel.MatchString(name) {
		name = "service" // the name is reported already; the keys can be checked anyway
	}
	svc := s.ServiceMapping(env)
	in := ""
	if env != "" {
		in = fmt.Sprintf(" (environment %q)", env)
	}
	add := func(path []string, hint, format string, args ...any) {
		k := o.catalogKey(nil)
		if len(path) >= 2 && path[0] == "services" {
			k = o.catalogKey(path[2:])
		}
		report(&Error{File: v.file, Line: v.pos.line(k), Key: k, Msg: fmt.Sprintf(format, args...) + in, Hint: hint})
	}
	keys := slices.Sorted(maps.Keys(svc))
	if env != "" {
		keys = slices.Sorted(maps.Keys(s.ComposeEnv[env]))
	}
	keyDoc := func(k string, val any) map[string]any {
		doc := map[string]any{"services": map[string]any{name: map[string]any{"image": "image", k: val}}}
		if vols := namedVolumes(s); k == "volumes" && len(vols) > 0 {
			doc["volumes"] = vols
		}
		return doc
	}
	for _, k := range keys {
		v.checkKey(cat, keyDoc(k, svc[k]), name, add)
	}
	if env == "" || cat.Environments[env].Engine != EngineSwarm {
		return
	}
	// Said once per swarm environment, not once per key's environment.
	in = ""
	// A stack file: what docker stack deploy ignores or refuses cannot be
	// carried there.
	stackSvc := map[string]any{"image": "image"}
	for k, val := range svc {
		if _, dropped := StackDropped[k]; !dropped {
			stackSvc[k] = val
		}
	}
	for _, k := range slices.Sorted(maps.Keys(stackSvc)) {
		path := []string{"services", name, k}
		if slices.Contains(dockertypes.UnsupportedProperties, k) {
			add(path, "remove it, or deploy that environment with compose", "docker stack deploy ignores %s, and %q deploys to a swarm", k, env)
			delete(stackSvc, k)
		} else if why, ok := dockertypes.ForbiddenProperties[k]; ok {
			add(path, why, "docker stack deploy refuses %s, and %q deploys to a swarm", k, env)
			delete(stackSvc, k)
		} else if why, ok := dockertypes.DeprecatedProperties[k]; ok {
			add(path, why, "docker stack deploy ignores %s, and %q deploys to a swarm", k, env)
			delete(stackSvc, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(stackSvc)) {
		if k == "image" || !v.checkKey(cat, keyDoc(k, stackSvc[k]), name, nil) {
			continue // what compose refuses is reported as such
		}
		doc := keyDoc(k, stackSvc[k])
		doc["version"] = composeschema.StackVersion
		if p, err := composeschema.Stack(doc); err != nil {
			add(nil, bugHint, "stack schema: %v", err)
		} else if p != nil {
			add(p.Path, fmt.Sprintf("stack files follow the legacy %s schema of docker stack deploy: leave it out for this service, or deploy that environment with compose", composeschema.StackVersion),
				"docker stack deploy would refuse it: %s; %q deploys to a swarm", p.Msg, env)
		}
	}
}

const bugHint = "a bug in this tool's compose check; please report it"

// checkKey checks one key of a service, in doc, as compose v2 and v1
// would, and reports its first problem through add (when not nil). It
// returns whether the key passed.
func (v *validator) checkKey(cat *Catalog, doc map[string]any, name string, add func(path []string, hint, format string, args ...any)) bool {
	if add == nil {
		add = func([]string, string, string, ...any) {}
	}
	const specHint = "write it as the compose specification says (https://docs.docker.com/reference/compose-file/services/)"
	if p, err := composeschema.Spec(doc); err != nil {
		add(nil, bugHint, "compose schema: %v", err)
		return false
	} else if p != nil {
		add(p.Path, specHint, "compose v2 would refuse it: %s", p.Msg)
		return false
	}
	if msg, path := loadCompose(filepath.Dir(cat.File), doc, name); msg != "" {
		add(path, specHint, "compose v2 would refuse it: %s", msg)
		return false
	}
	if p, err := composeschema.V1(doc); err != nil {
		add(nil, bugHint, "compose v1 schema: %v", err)
		return false
	} else if p != nil {
		add(p.Path, "the rendered files must work with compose v1 (docker-compose 1.29) and v2: leave it out, or write it in a form both read",
			"docker-compose 1.29 would refuse it: %s", p.Msg)
		return false
	}
	return true
}

// namedVolumes declares the named volumes s mounts, as render does.
func namedVolumes(s *Service) map[string]any {
	out := map[string]any{}
	for _, vol := range s.Volumes {
		if n := vol.Named(); n != "" {
			out[n] = map[string]any{}
		}
	}
	return out
}

// servicePath finds the place a compose-go loader message is about:
// "services.web.ulimits.nofile.soft: ..." or, from its decoder,
// "'services[web].healthcheck.interval' time: ...".
var servicePath = regexp.MustCompile(`'?services(?:\.|\[)([a-zA-Z0-9._-]+?)\]?\.([a-zA-Z0-9_.\[\]-]+?)'?(?::? |$)`)

// loadCompose runs compose-go's whole loader over doc, for the checks it
// makes beyond the schema (durations, units, port and volume syntax,
// ulimits...), with values taken literally as render writes them.
func loadCompose(dir string, doc map[string]any, name string) (msg string, path []string) {
	defer func() {
		// compose-go trusts values that passed its schema; one it did not
		// expect must not take Load down with it.
		if r := recover(); r != nil {
			msg, path = fmt.Sprintf("compose-go could not read it (%v)", r), nil
		}
	}()
	doc = asYAML(doc).(map[string]any)
	details := types.ConfigDetails{WorkingDir: dir, Environment: types.Mapping{},
		ConfigFiles: []types.ConfigFile{{Filename: "services.toml", Config: doc}}}
	_, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("catalog-check", true)
		// Literal values: '$' is the catalog's own character, escaped
		// when rendered; only the type casts of interpolation apply.
		o.Interpolate.Substitute = func(s string, _ template.Mapping) (string, error) { return s, nil }
		o.SkipResolveEnvironment = true
		o.ResolvePaths = false
	})
	if err == nil {
		return "", nil
	}
	msg = strings.Join(strings.Fields(err.Error()), " ")
	loc := servicePath.FindStringSubmatchIndex(msg)
	if loc == nil || msg[loc[2]:loc[3]] != name {
		return msg, nil
	}
	path = []string{"services", name}
	for _, p := range strings.FieldsFunc(msg[loc[4]:loc[5]], func(r rune) bool { return r == '.' || r == '[' || r == ']' }) {
		path = append(path, p)
	}
	if rest := strings.TrimSpace(msg[loc[1]:]); rest != "" {
		msg = strings.TrimPrefix(rest, "failed to cast to expected type: ")
	}
	return msg, path
}

// asYAML gives whole numbers the type a YAML decoder gives them (int),
// which is what compose-go's loader expects of a document.
func asYAML(v any) any {
	switch v := v.(type) {
	case int64:
		return int(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = asYAML(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = asYAML(e)
		}
		return out
	}
	return v
}

// KeyProblem is what CheckComposeKey finds wrong in one compose key.
type KeyProblem struct {
	// Path is the place in the key's value (empty for the value itself):
	// "nofile", "soft" in ulimits.
	Path []string
	Msg  string
}

// CheckComposeKey checks one key of a compose service, with a plain
// value (see Service.ServiceMapping), as Load checks the compose
// passthrough: as compose v2 and docker-compose 1.29 would read it. It
// returns the first problem, or nil. Package importer asks it before
// proposing a key.
func CheckComposeKey(key string, value any) *KeyProblem {
	svc := map[string]any{"image": "image", key: value}
	doc := map[string]any{"services": map[string]any{"service": svc}}
	if key == "volumes" {
		s := &Service{}
		if list, ok := value.([]any); ok {
			for _, e := range list {
				switch e := e.(type) {
				case string:
					s.Volumes = append(s.Volumes, Volume{Spec: e})
				case map[string]any:
					s.Volumes = append(s.Volumes, Volume{Long: e})
				}
			}
		}
		if vols := namedVolumes(s); len(vols) > 0 {
			doc["volumes"] = vols
		}
	}
	var found *KeyProblem
	v := &validator{}
	v.checkKey(&Catalog{File: "/services.toml"}, doc, "service", func(path []string, _ string, format string, args ...any) {
		if found != nil {
			return
		}
		found = &KeyProblem{Msg: fmt.Sprintf(format, args...)}
		if len(path) > 3 {
			found.Path = path[3:]
		}
	})
	return found
}
