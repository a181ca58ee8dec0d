package catalog

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// A service's secrets come in two forms:
//
//	secrets = ["GATEWAY_API_TOKEN"]                       # names only: values from outside
//	secrets = { GATEWAY_API_TOKEN = "change-me-dev-token" }  # names with dev defaults
//
// The catalog is committed, so a literal in it is no secret: it is only a
// default for local environments (package secrets never uses it for a
// remote one). The values a command uses come from package secrets.

// rawSecrets is the decoded secrets key, in either form.
type rawSecrets struct {
	// list is set for the array form.
	list bool
	// names is the array form as written, duplicates included.
	names []string
	// defaults is the table form.
	defaults map[string]string
}

// UnmarshalTOML decodes either form. typeCheck has checked the types
// already, with a line and key for each problem; the errors here are for
// a catalog decoded without it.
func (r *rawSecrets) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case []any:
		r.list = true
		for i, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("secrets[%d] must be a string", i)
			}
			r.names = append(r.names, s)
		}
	case map[string]any:
		r.defaults = make(map[string]string, len(d))
		for k, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("secrets.%s must be a string", k)
			}
			r.defaults[k] = s
		}
	default:
		return fmt.Errorf("secrets must be an array of names or a table")
	}
	return nil
}

const secretsFormHint = `write secrets = ["NAME"] (values come from outside the catalog) or secrets = { NAME = "dev default" } (a default for local environments only)`

// typeCheckSecrets accepts an array of strings or a table of strings and
// names the key of anything else. A value is never quoted: even a dev
// default is reported by its key alone.
func (v *validator) typeCheckSecrets(val any, path string) {
	switch d := val.(type) {
	case []any:
		for i, e := range d {
			if _, ok := e.(string); !ok {
				p := fmt.Sprintf("%s[%d]", path, i)
				v.add(p, `write each name in double quotes: secrets = ["GATEWAY_API_TOKEN"]`,
					"%s must be a string (a secret's name), not %s", leafName(p), typeName(e))
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(d)) {
			if _, ok := d[k].(string); !ok {
				p := path + "." + k
				v.wrongType(p, d[k], "a string", fmt.Sprintf(`put the value in double quotes: %s = "..."`, k))
			}
		}
	default:
		v.wrongType(path, val, "an array of names or a table of dev defaults", secretsFormHint)
	}
}

// reservedNames are variables a secret must not be named after: a secret
// is looked up in the runner's own environment under its name and set in
// the container under it, so such a name would read the user's PATH or
// HOME as a secret's value, or replace what the container's processes
// and this tool's children rely on.
var reservedNames = map[string]string{
	"PATH":   "the search path of every program",
	"HOME":   "the home folder of the user",
	"USER":   "the user's name",
	"SHELL":  "the user's shell",
	"PWD":    "the working folder",
	"LANG":   "the locale",
	"TERM":   "the terminal type",
	"TMPDIR": "the temporary folder",
}

// reservedPrefixes are families of variables that tools read as settings.
var reservedPrefixes = []struct{ prefix, what string }{
	{"LD_", "the dynamic loader's settings (LD_PRELOAD, LD_LIBRARY_PATH)"},
	{"DOCKER_", "the Docker client's settings (DOCKER_HOST, DOCKER_CONFIG)"},
	{"DEPLOY_", "this tool's settings (DEPLOY_CATALOG, DEPLOY_ENV)"},
	{"MAESTRO_", "this tool's and its tests' settings"},
	{"COMPOSE_", "compose's settings (COMPOSE_PROJECT_NAME, COMPOSE_FILE)"},
}

// reservedSecret says which variable name clashes with, or "". The
// comparison ignores case: "Path" is PATH on some systems, and a
// lower-case lookalike of a reserved name is a mistake anyway.
func reservedSecret(name string) string {
	up := strings.ToUpper(name)
	if what, ok := reservedNames[up]; ok {
		return fmt.Sprintf("the %s variable, %s", up, what)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(up, p.prefix) {
			return fmt.Sprintf("the %s* variables, %s", p.prefix, p.what)
		}
	}
	return ""
}

const (
	varNameHint      = "a variable name is letters, digits and '_', not starting with a digit, e.g. LOG_LEVEL"
	containerEnvHint = "a container's variable name is letters, digits, '_', '.' and '-', not starting with a digit or either of the last two, e.g. LOG_LEVEL or discovery.type"
)

// secretName checks one declared name at key. An element of the array
// form that is no name is not shown: it is most likely a value written
// where its name belongs (["s3cr3t"], ["TOKEN=s3cr3t"]).
func (v *validator) secretName(key, name string, element bool) bool {
	switch {
	case element && !envVarName.MatchString(name):
		hint := "the array lists names only, " + varNameHint + `; a value belongs outside the catalog (the environment, the secrets file or secrets_command), or, as a dev default, in the table form secrets = { NAME = "value" }`
		v.add(key, hint, "%s is not a variable name (not shown: it may be a value)", leafName(key))
		return false
	case !envVarName.MatchString(name):
		v.add(key, varNameHint, "invalid variable name %q", name)
		return false
	}
	if clash := reservedSecret(name); clash != "" {
		v.add(key, "rename the secret, e.g. GATEWAY_API_TOKEN: it is looked up in this tool's environment under its name and set in the container under it, where it would stand in for that variable",
			"secret name %s clashes with %s", name, clash)
		return false
	}
	return true
}

// secrets checks a service's secrets and fills SecretNames,
// SecretDefaults, SecretPlaces and, with the defaults, Secrets.
func (v *validator) secrets(key string, r *rawSecrets, s *Service) {
	k := key + ".secrets"
	places := map[string]Place{}
	if r.list {
		for i, n := range r.names {
			ek := fmt.Sprintf("%s[%d]", k, i)
			if !v.secretName(ek, n, true) {
				continue
			}
			if first, dup := places[n]; dup {
				v.add(ek, fmt.Sprintf("remove it: %s (line %d) names it already", strings.TrimPrefix(first.Key, key+"."), first.Line),
					"secret %s is listed twice", n)
				continue
			}
			places[n] = Place{Line: v.pos.line(ek), Key: ek}
		}
	} else {
		for _, n := range slices.Sorted(maps.Keys(r.defaults)) {
			ek := k + "." + n
			v.secretName(ek, n, false)
			if strings.ContainsRune(r.defaults[n], 0) {
				v.add(ek, "remove the \\u0000: a process environment cannot carry a NUL byte", "value of %s holds a NUL byte", n)
			}
			places[n] = Place{Line: v.pos.line(ek), Key: ek}
		}
		if len(r.defaults) > 0 {
			s.SecretDefaults = r.defaults
			s.Secrets = maps.Clone(r.defaults)
		}
	}
	if len(places) == 0 {
		return
	}
	s.SecretNames = slices.Sorted(maps.Keys(places))
	s.SecretPlaces = places
	for _, n := range s.SecretNames {
		if _, both := s.Env[n]; both {
			v.add(places[n].Key, "keep it in secrets only, so that its value never reaches a compose file or the output",
				"%s is both in env and in secrets", n)
		}
	}
}

const secretsCommandHint = `an argument list, never a shell string, e.g. secrets_command = ["pass", "show", "maestro/demo"]; remove the key when there is none`

// environmentSecrets checks and sets where an environment's secrets come
// from: secrets_file and secrets_command.
func (v *validator) environmentSecrets(key string, r *rawEnv, e *Environment) {
	e.SecretsFile = v.path(filepath.Join(".maestro", "secrets", e.Name+".env"))
	if r.SecretsFile != nil {
		k := key + ".secrets_file"
		switch f := *r.SecretsFile; {
		case strings.TrimSpace(f) == "":
			v.add(k, fmt.Sprintf("name a file, relative to the catalog's folder, or remove the key for the default .maestro/secrets/%s.env", e.Name),
				"secrets_file is empty")
		case strings.ContainsRune(f, 0):
			v.add(k, "remove the \\u0000: no file name holds a NUL byte", "secrets_file %q holds a NUL byte", f)
		default:
			e.SecretsFile = v.path(f)
		}
	}
	if r.SecretsCommand == nil {
		return
	}
	k := key + ".secrets_command"
	argv := *r.SecretsCommand
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		v.add(k, secretsCommandHint, "empty secrets_command: it names no program")
		return
	}
	ok := true
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			v.add(fmt.Sprintf("%s[%d]", k, i), "remove the \\u0000: a program's arguments cannot carry a NUL byte",
				"argument %d of secrets_command holds a NUL byte", i)
			ok = false
		}
	}
	prog := argv[0]
	if words := strings.Fields(prog); len(words) > 1 && !strings.ContainsRune(words[0], '/') {
		// No program on a PATH has a space in its name: this is a command
		// line in one string, which would be run as one (missing)
		// program. A path ("/opt/My Tools/get") may hold spaces.
		v.add(k+"[0]", fmt.Sprintf("split it into its words: secrets_command = [%s]", quotedWords(prog)),
			"secrets_command[0] %q is a whole command line, not a program", prog)
		return
	}
	if !ok {
		return
	}
	e.SecretsCommand = slices.Clone(argv)
	if strings.ContainsRune(prog, '/') {
		// ./bin/secrets and ~/bin/secrets mean the catalog's folder and
		// the home folder, like every path in the catalog, whatever the
		// folder the tool is started from.
		e.SecretsCommand[0] = v.path(prog)
	}
}

// quotedWords writes s's words as a TOML list's items.
func quotedWords(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = fmt.Sprintf("%q", w)
	}
	return strings.Join(words, ", ")
}
