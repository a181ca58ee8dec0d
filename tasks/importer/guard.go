package importer

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// under says whether path is prefix or below it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+".") || strings.HasPrefix(path, prefix+"[")
}

// secretVar says why a variable's value is a secret, or "": its name,
// a blank in .env.example, or the shape of its value.
func (m *mapper) secretVar(name string) string {
	switch {
	case secretName(name):
		return fmt.Sprintf("${%s} is a secret by its name", name)
	case m.f.blank[name]:
		return fmt.Sprintf("${%s} is left blank in .env.example, for each user's secret", name)
	}
	if shape := secretValue(m.f.env[name]); shape != "" {
		return fmt.Sprintf("${%s} holds what looks like %s", name, shape)
	}
	return ""
}

// droppable are the service keys whose parts can be left out when they
// carry a secret; besides them, any key the passthrough carries.
var droppable = map[string]bool{"labels": true, "volumes": true, "ports": true, "healthcheck": true, "deploy": true, "restart": true}

// guard puts every string of the service that refers to a variable (but
// environment's, which become secrets) through the secret detector and
// the operator's-environment rule:
//
//   - one referring to a variable neither .env nor .env.example sets,
//     with no default, is a loss: compose would take its value from the
//     shell, and import takes nothing from the operator's environment
//     (with -lossy it is imported blank, as compose without the variable);
//   - one carrying a secret (secretVar, or the whole string's shape) is a
//     loss and is left out, -lossy or not; where it cannot be left out
//     (the image, the build, x-maestro...) the service is refused.
func (m *mapper) guard(at string) error {
	m.tainted = map[string]bool{}
	var errs catalog.Errors
	for _, p := range slices.Sorted(maps.Keys(m.f.vars)) {
		if !under(p, at) || under(p, at+".environment") {
			continue
		}
		var said []string
		for _, v := range m.f.unset[p] {
			if !slices.Contains(said, v) {
				said = append(said, v)
				m.loss(p, "refers to ${%s}, which neither .env nor .env.example beside the file sets: compose would take it from the shell that runs it, and import takes nothing from the operator's environment (set it in .env; -lossy imports it blank, as compose without it)", v)
			}
		}
		why := ""
		for _, v := range m.f.vars[p] {
			if why = m.secretVar(v); why != "" {
				break
			}
		}
		if shape := secretValue(m.f.values[p]); why == "" && shape != "" {
			why = "its value looks like " + shape
		}
		if why == "" {
			continue
		}
		m.tainted[p] = true
		key, _, _ := strings.Cut(strings.TrimPrefix(p, at+"."), ".")
		key, _, _ = strings.Cut(key, "[")
		if !droppable[key] && handled[key] && !under(p, at+".build.args") {
			errs = append(errs, m.f.errorAt(p, "write the value there, or take the variable out: import writes no secret values",
				"carries a secret (%s), which would be written into the catalog", why))
			continue
		}
		m.loss(p, "carries a secret (%s): not imported, -lossy or not, since the catalog and the compose files would hold its value; give the service the value through a secret in its environment instead", why)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// taint says whether a string at or below path carries a secret.
func (m *mapper) taint(path string) bool {
	for p := range m.tainted {
		if under(p, path) {
			return true
		}
	}
	return false
}

// taintedKeys are the keys of a mapping written as a mapping or as a
// list of KEY=value whose values carry a secret.
func (m *mapper) taintedKeys(path string, v any) map[string]bool {
	out := map[string]bool{}
	switch v := v.(type) {
	case map[string]any:
		for k := range v {
			out[k] = m.taint(path + "." + k)
		}
	case []any:
		for i, x := range v {
			s, _ := x.(string)
			k, _, _ := strings.Cut(s, "=")
			out[k] = out[k] || m.taint(fmt.Sprintf("%s[%d]", path, i))
		}
	}
	return out
}

// neverWritten is the last line of defence: the entry as it will be
// written holds none of the credential-shaped values of the variables
// the files may refer to (the files a service extends share them).
func (m *mapper) neverWritten(at string, e *entry) error {
	var b strings.Builder
	writeEntry(&b, e)
	text := b.String()
	for _, name := range slices.Sorted(maps.Keys(m.f.env)) {
		if v := m.f.env[name]; secretValue(v) != "" && strings.Contains(text, v) {
			return catalog.Errors{m.f.errorAt(at, "take the variable out of what the service says, or give the value through a secret",
				"the entry would hold the value of ${%s}, which looks like a credential", name)}
		}
	}
	return nil
}

// fileSecrets maps compose's file secrets to catalog secrets of the same
// name: the value comes from outside the catalog, as every secret's does,
// and reaches the container as a variable (on a swarm also as the file
// /run/secrets/NAME).
func (m *mapper) fileSecrets(at string, raw map[string]any, e *entry) {
	list, _ := raw["secrets"].([]any)
	for i, x := range list {
		sat := fmt.Sprintf("%s.secrets[%d]", at, i)
		var name, target string
		switch x := x.(type) {
		case string:
			name = x
		case map[string]any:
			name, _ = x["source"].(string)
			target, _ = x["target"].(string)
		}
		def, ok := m.f.project.Secrets[name]
		tat := "secrets." + name
		_, inEnv := e.Env[name]
		switch {
		case !ok:
			continue // compose-go refuses an undefined one
		case bool(def.External):
			m.loss(tat, "an external secret: swarm's own; the catalog's secrets are values given to it")
			continue
		case !envName.MatchString(name):
			m.loss(sat, "secret %q: a catalog secret is a variable name (letters, digits and '_'): rename it", name)
			continue
		case inEnv || slices.Contains(e.Secrets, name):
			m.loss(sat, "secret %s: the service has a variable of that name already", name)
			continue
		}
		from := "the file wrote it inline, which is not imported"
		switch {
		case def.File != "":
			from = "compose read it from " + m.rebase(def.File)
		case def.Environment != "":
			from = "compose took it from the shell's $" + def.Environment
		}
		file := "/run/secrets/" + name
		if target != "" {
			file = target
			if !strings.HasPrefix(target, "/") {
				file = "/run/secrets/" + target
			}
		}
		m.note(sat, "the file secret %s becomes the catalog secret %s: give its value as $%s or in .maestro/secrets/<env>.env (%s); the container gets it as the variable %s (on a swarm also as the file /run/secrets/%s), not as the file %s",
			name, name, name, from, name, name, file)
		e.Secrets = append(e.Secrets, name)
	}
}

// envName is what a catalog secret is named: a variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// containerName drops container_name: the tool names containers after
// the project (promotion starts a new container beside the old, which a
// fixed name forbids), and services reach each other by service name.
// That is a note, unless another string of the file refers to the
// container by that name: then a loss, naming where.
func (m *mapper) containerName(at string, raw map[string]any, e *entry) {
	name, ok := raw["container_name"].(string)
	if !ok {
		return
	}
	kat := at + ".container_name"
	if name != e.Name {
		if where := m.reachedAs(name, kat); where != "" {
			m.loss(kat, "container_name %q is dropped, but %s reaches the container by it: the catalog's services reach each other by service name, here %q", name, where, e.Name)
			return
		}
	}
	m.note(kat, "container_name %q is dropped: the tool names containers after the project, and other services reach this one by its name %q", name, e.Name)
}

// hostKey is a variable or key name that holds a host name.
var hostKey = regexp.MustCompile(`(?i)(HOST|HOSTS|HOSTNAME|ADDR|ADDRESS|SERVER|SERVERS|ENDPOINT|URL|URI)$`)

// reachedAs is the first string of the file but skip's that uses name as
// a host: in a URL (://name, @name), with a port (name:5432), or as the
// whole value of a key or variable named like a host (DB_HOST: name).
func (m *mapper) reachedAs(name, skip string) string {
	q := regexp.QuoteMeta(name)
	inURL := regexp.MustCompile(`(://|@)` + q + `($|[^A-Za-z0-9_.-])`)
	withPort := regexp.MustCompile(`(^|[\s,=])` + q + `:[0-9]`)
	var where string
	walkStrings(m.f.raw["services"], "services", func(p, s string) bool {
		if p == skip || strings.HasSuffix(p, ".container_name") {
			return true
		}
		key := p[strings.LastIndexAny(p, ".[")+1:]
		value := s
		if k, v, ok := strings.Cut(s, "="); ok && strings.HasSuffix(p, "]") {
			key, value = k, v // KEY=value in a list
		}
		if inURL.MatchString(s) || withPort.MatchString(s) || value == name && hostKey.MatchString(key) {
			where = p
			return false
		}
		return true
	})
	return where
}

// walkStrings calls fn with every string under v and its path, until fn
// returns false.
func walkStrings(v any, path string, fn func(path, s string) bool) bool {
	switch v := v.(type) {
	case string:
		return fn(path, v)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if !walkStrings(v[k], path+"."+k, fn) {
				return false
			}
		}
	case []any:
		for i, x := range v {
			if !walkStrings(x, fmt.Sprintf("%s[%d]", path, i), fn) {
				return false
			}
		}
	}
	return true
}
