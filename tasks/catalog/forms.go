package catalog

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/maestro-platform/deploy/tasks/labels"
)

// Keys that take two forms: a short one for the common case, and a table
// that says everything compose can say about it.
//
//	healthcheck = ["/app", "-healthcheck"]                        # exec form, the tool's timings
//	healthcheck = { test = "curl -f http://localhost/", interval = "30s" }  # compose's own keys
//	depends_on = ["db", "cache"]                                  # healthy if it has a healthcheck, else started
//	depends_on = { db = "service_healthy", migrate = "service_completed_successfully" }
//	volumes = ["data:/data", "./conf:/etc/app:ro",                # short syntax
//	           { type = "tmpfs", target = "/tmp", tmpfs = { size = 65536 } }]   # long syntax

// rawHealthcheck is the decoded healthcheck key, in either form.
type rawHealthcheck struct {
	set   bool
	args  []string       // the array form
	table map[string]any // the table form
}

// UnmarshalTOML decodes either form; typeCheck has reported wrong types
// with their lines already.
func (r *rawHealthcheck) UnmarshalTOML(data any) error {
	r.set = true
	switch d := data.(type) {
	case []any:
		for i, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("healthcheck[%d] must be a string", i)
			}
			r.args = append(r.args, s)
		}
		if r.args == nil {
			r.args = []string{}
		}
	case map[string]any:
		r.table = d
	default:
		return fmt.Errorf("healthcheck must be an array of strings or a table")
	}
	return nil
}

// rawDepends is the decoded depends_on key, in either form.
type rawDepends struct {
	names      []string          // the array form, as written
	conditions map[string]string // the table form
}

// UnmarshalTOML decodes either form.
func (r *rawDepends) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case []any:
		for i, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("depends_on[%d] must be a string", i)
			}
			r.names = append(r.names, s)
		}
	case map[string]any:
		r.conditions = make(map[string]string, len(d))
		for k, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("depends_on.%s must be a string", k)
			}
			r.conditions[k] = s
		}
	default:
		return fmt.Errorf("depends_on must be an array of names or a table of conditions")
	}
	return nil
}

// rawVolume is one element of volumes: a string or a table.
type rawVolume struct {
	spec  string
	table map[string]any
}

// UnmarshalTOML decodes either form.
func (r *rawVolume) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case string:
		r.spec = d
	case map[string]any:
		r.table = d
	default:
		return fmt.Errorf("a volume must be a string or a table")
	}
	return nil
}

const (
	healthcheckFormHint = `write healthcheck = ["/app", "-healthcheck"] (exec form: the engine runs it every 30s, the runner every half second while the container starts) or a table of compose's healthcheck keys, e.g. healthcheck = { test = ["CMD-SHELL", "curl -f http://localhost/"], interval = "30s" }`
	dependsFormHint     = `write depends_on = ["db"] (healthy when db has a healthcheck, else started) or depends_on = { db = "service_started" } with compose's conditions`
	volumeFormHint      = `write "name:/path" (named volume), "./host/path:/path[:ro]" (bind mount, relative to the catalog) or a table of compose's long syntax, e.g. { type = "tmpfs", target = "/tmp" }`
)

// typeCheckHealthcheck accepts an array of strings or a table; the
// table's values are compose's and are checked with the compose keys.
func (v *validator) typeCheckHealthcheck(val any, path string) {
	switch d := val.(type) {
	case []any:
		for i, e := range d {
			if _, ok := e.(string); !ok {
				p := fmt.Sprintf("%s[%d]", path, i)
				v.wrongType(p, e, "a string", `write each argument in double quotes: healthcheck = ["/app", "-healthcheck"]`)
			}
		}
	case map[string]any:
	default:
		v.wrongType(path, val, "an array of strings or a table", healthcheckFormHint)
	}
}

// typeCheckDepends accepts an array of names or a table of conditions.
func (v *validator) typeCheckDepends(val any, path string) {
	switch d := val.(type) {
	case []any:
		for i, e := range d {
			if _, ok := e.(string); !ok {
				p := fmt.Sprintf("%s[%d]", path, i)
				v.wrongType(p, e, "a string", `write each name in double quotes: depends_on = ["db"]`)
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(d)) {
			if _, ok := d[k].(string); !ok {
				v.wrongType(path+"."+k, d[k], "a string", fmt.Sprintf(`write the condition in double quotes: %s = "service_healthy"`, k))
			}
		}
	default:
		v.wrongType(path, val, "an array of names or a table of conditions", dependsFormHint)
	}
}

// typeCheckVolume accepts a string or a table.
func (v *validator) typeCheckVolume(val any, path string) {
	switch val.(type) {
	case string, map[string]any:
	default:
		v.wrongType(path, val, "a string or a table", volumeFormHint)
	}
}

// healthcheckKeys are compose's healthcheck keys that the table form takes.
// start_interval is left out: docker-compose 1.29 does not know it.
var healthcheckKeys = []string{"test", "interval", "timeout", "retries", "start_period", "disable"}

// healthcheck checks either form and sets Healthcheck and
// HealthcheckOptions.
func (v *validator) healthcheck(key string, r *rawHealthcheck, s *Service) {
	if r.table == nil {
		if len(r.args) > 0 && strings.TrimSpace(r.args[0]) == "" {
			v.add(key, `an argument list such as ["/app", "-healthcheck"]`, "empty healthcheck command")
		}
		s.Healthcheck = r.args
		if len(s.Healthcheck) == 0 {
			s.Healthcheck = nil
		}
		return
	}
	t := v.plainTable(key, r.table)
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if !slices.Contains(healthcheckKeys, k) {
			hint := "compose's healthcheck keys: " + strings.Join(healthcheckKeys, ", ")
			if k == "start_interval" {
				hint = "docker-compose 1.29 does not know start_interval, and the rendered files must work with compose v1 and v2: leave it out"
			}
			v.add(key+"."+k, hint, "unknown healthcheck key %q", k)
			delete(t, k)
		}
	}
	s.HealthcheckOptions = t
	if off, _ := t["disable"].(bool); off {
		return
	}
	before := len(v.errs)
	defer func() {
		if len(v.errs) > before {
			delete(t, "test") // said here; the compose check would say it again
		}
	}()
	switch test := t["test"].(type) {
	case string:
		if strings.TrimSpace(test) == "" {
			v.add(key+".test", healthcheckFormHint, "empty healthcheck test")
			return
		}
		s.Healthcheck = []string{test}
	case []any:
		args := make([]string, 0, len(test))
		for _, a := range test {
			str, _ := a.(string) // the compose check reports other types
			args = append(args, str)
		}
		switch {
		case len(args) == 0:
			v.add(key+".test", `start it with "CMD" (exec form), "CMD-SHELL" (a shell line) or "NONE"`, "empty healthcheck test")
		case args[0] == "NONE":
		case args[0] == "CMD" && len(args) > 1 && strings.TrimSpace(args[1]) != "":
			s.Healthcheck = args[1:]
		case args[0] == "CMD-SHELL" && len(args) == 2 && strings.TrimSpace(args[1]) != "":
			s.Healthcheck = args[1:]
		case args[0] == "CMD" || args[0] == "CMD-SHELL":
			v.add(key+".test", `["CMD", "program", "arg"...] or ["CMD-SHELL", "one shell line"]`, "healthcheck test %q has no command", args[0])
		default:
			v.add(key+".test", `start it with "CMD" (exec form), "CMD-SHELL" (a shell line) or "NONE", or write the array form healthcheck = ["/app", "-healthcheck"]`,
				"healthcheck test starts with %q", args[0])
		}
	}
}

// DependsConditions are the conditions compose waits for, as the table
// form of depends_on names them.
var DependsConditions = []string{ConditionStarted, ConditionHealthy, ConditionCompleted}

// dependsOn checks either form and sets DependsOn, DependsOnConditions
// and where each dependency is written.
func (v *validator) dependsOn(key string, r *rawDepends, s *Service) {
	if r.conditions == nil {
		s.DependsOn = r.names
		for i := range r.names {
			v.depKeys[s] = append(v.depKeys[s], fmt.Sprintf("%s[%d]", key, i))
		}
		return
	}
	s.DependsOn = slices.Sorted(maps.Keys(r.conditions))
	s.DependsOnConditions = r.conditions
	for _, d := range s.DependsOn {
		k := key + "." + d
		v.depKeys[s] = append(v.depKeys[s], k)
		if c := r.conditions[d]; !slices.Contains(DependsConditions, c) {
			hint := "one of " + strings.Join(DependsConditions, ", ")
			if m := didYouMean(c, DependsConditions); m != "" {
				hint = fmt.Sprintf("did you mean %q?", m)
			}
			v.add(k, hint, "unknown condition %q", c)
		}
	}
}

// reservedLabels are label prefixes set by the tool, compose and swarm,
// by which they find their containers.
var reservedLabels = []string{labels.Prefix, labels.HelperPrefix, labels.DockerPrefix}

func (v *validator) labels(key string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case strings.TrimSpace(k) == "":
			v.add(key, `give each label a name, e.g. labels = { "com.example.team" = "payments" }`, "empty label name")
		case slices.ContainsFunc(reservedLabels, func(p string) bool { return strings.HasPrefix(k, p) }):
			v.add(key+"."+k, labels.Prefix+"* and "+labels.HelperPrefix+"* are the tool's, "+labels.DockerPrefix+"* compose's and swarm's: they find containers by them; choose another name",
				"label %q is reserved", k)
		}
	}
}

var (
	namedVolume = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volumeModes = []string{"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate"}
	volumeTypes = []string{"volume", "bind", "tmpfs"}
)

// volume checks one element of volumes and returns it with a bind
// mount's host path made absolute.
func (v *validator) volume(key string, r *rawVolume) (Volume, bool) {
	if r.table != nil {
		t := v.plainTable(key, r.table)
		typ, _ := t["type"].(string)
		if !slices.Contains(volumeTypes, typ) {
			v.add(key+".type", `type = "volume", "bind" or "tmpfs"`, "volume type %q", typ)
			return Volume{}, false
		}
		if typ == "bind" {
			src, _ := t["source"].(string)
			if src == "" {
				v.add(key+".source", `the host path to mount, relative to the catalog or absolute: source = "./conf"`, "bind mount without a source")
				return Volume{}, false
			}
			t["source"] = v.path(src)
		}
		if tgt, _ := t["target"].(string); !strings.HasPrefix(tgt, "/") {
			v.add(key+".target", `the absolute path in the container: target = "/data"`, "volume target %q is not an absolute path", tgt)
			return Volume{}, false
		}
		return Volume{Long: t}, true
	}
	spec := r.spec
	bad := func(format string, args ...any) (Volume, bool) {
		v.add(key, volumeFormHint, "invalid volume %q: %s", spec, fmt.Sprintf(format, args...))
		return Volume{}, false
	}
	parts := strings.Split(spec, ":")
	if len(parts) == 1 {
		if !strings.HasPrefix(spec, "/") {
			return bad("an anonymous volume is an absolute path in the container")
		}
		return Volume{Spec: spec}, true
	}
	if len(parts) > 3 {
		return bad("too many ':'")
	}
	src, tgt := parts[0], parts[1]
	if !strings.HasPrefix(tgt, "/") {
		return bad("the path in the container must be absolute")
	}
	if len(parts) == 3 {
		for _, m := range strings.Split(parts[2], ",") {
			if !slices.Contains(volumeModes, m) {
				return bad("unknown mode %q (%s)", m, strings.Join(volumeModes, ", "))
			}
		}
	}
	switch {
	case src == "":
		return bad("no volume name or host path before ':'")
	case strings.HasPrefix(src, "/") || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "~"):
		// A bind mount: render writes the absolute path, so that the file
		// reads the same from every folder it is in.
		return Volume{Spec: v.path(src) + spec[len(src):]}, true
	case !namedVolume.MatchString(src):
		return bad("%q is neither a volume name (letters, digits, '_', '.', '-') nor a host path (starting with /, ./, ../ or ~)", src)
	}
	return Volume{Spec: spec}, true
}
