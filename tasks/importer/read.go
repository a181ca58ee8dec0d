package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// composeFile is one compose file read for import: its text as written
// (interpolated, for the keys carried as they are) and as compose-go's
// loader understands it (for the keys the catalog models).
type composeFile struct {
	// Path is absolute; Shown is how messages name it.
	Path, Shown, Dir string
	pos              positions
	// legacy is set for the version 1 format, which has no services key:
	// its services are at the top and its paths lack "services.".
	legacy bool
	// name is compose's project name for the file.
	name string
	// env is what the file is interpolated with: the process environment,
	// then .env, then .env.example beside it.
	env map[string]string
	// from says where each variable of env came from, for notes.
	from map[string]string
	// blank are the variables .env.example lists without a value: the
	// ones a repository leaves for each user to fill in, its secrets.
	blank map[string]bool
	// raw is the file interpolated, with services under "services";
	// vars holds, by path, the variables each string refers to.
	raw  map[string]any
	vars map[string][]string
	// project is what compose-go's loader makes of it.
	project *types.Project
	// order lists the services as written.
	order []string
}

// fileNames are the names compose v2 looks for in a folder, in its order.
var fileNames = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}

// resolveFile turns a path argument into a compose file: a folder means
// the compose file in it.
func resolveFile(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return abs, nil
	}
	for _, n := range fileNames {
		if fi, err := os.Stat(filepath.Join(abs, n)); err == nil && !fi.IsDir() {
			return filepath.Join(abs, n), nil
		}
	}
	return "", fmt.Errorf("%s holds no compose file (%s)", p, strings.Join(fileNames, ", "))
}

// errorAt is a problem with a compose file, in the catalog's form.
func (f *composeFile) errorAt(path, hint, format string, args ...any) *catalog.Error {
	return &catalog.Error{File: f.Shown, Line: f.line(path), Key: path, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// line is the line of path ("services.web.ports[0]"), or of its closest
// written parent.
func (f *composeFile) line(path string) int {
	if f.legacy {
		path = strings.TrimPrefix(path, "services.")
	}
	return f.pos.line(path)
}

const yamlHint = "the file is not valid YAML here"

var yamlLine = regexp.MustCompile(`line (\d+)(?:, column \d+)?: ([^:]*)$`)

// yamlError places a YAML syntax error at the line it names last (the
// problem, after the context it was found in). go-yaml counts the lines
// of its "did not find expected ..." errors from 0, of the others from 1.
func yamlError(file string, err error) *catalog.Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &catalog.Error{File: file, Msg: msg, Hint: yamlHint + " (mind the indentation: spaces only)"}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		if strings.HasPrefix(m[2], "did not find expected") {
			e.Line++
		}
		e.Msg = m[2]
	}
	return e
}

// readCompose reads, interpolates and loads one compose file. environ is
// the process environment (KEY=value).
func readCompose(ctx context.Context, path, shown string, environ []string) (*composeFile, error) {
	f := &composeFile{Path: path, Shown: shown, Dir: filepath.Dir(path), vars: map[string][]string{}}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, catalog.Errors{{File: shown, Msg: err.Error(), Hint: "name a compose file or a folder holding one"}}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, catalog.Errors{f.errorAt("", "a compose file declares its services under services:", "the file is empty")}
		}
		return nil, catalog.Errors{yamlError(shown, err)}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, catalog.Errors{{File: shown, Line: more.Line, Msg: "a second YAML document",
			Hint: "import reads one document per file: split it into files"}}
	}
	f.pos = yamlPositions(&root)
	var doc any
	if err := root.Decode(&doc); err != nil {
		return nil, catalog.Errors{{File: shown, Msg: err.Error(), Hint: yamlHint}}
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, catalog.Errors{f.errorAt("", "a compose file is a mapping with services: at the top", "the file is not a mapping")}
	}
	if top, err = f.legacyFormat(top); err != nil {
		return nil, err
	}
	if err := f.environment(environ); err != nil {
		return nil, err
	}
	f.name = projectName(top, f.Dir)
	interpolated, err := f.interpolate(top, "")
	if err != nil {
		return nil, err
	}
	f.raw = interpolated.(map[string]any)
	if err := f.load(ctx, top); err != nil {
		return nil, err
	}
	services, _ := f.raw["services"].(map[string]any)
	f.order = slices.Collect(maps.Keys(services))
	sort.SliceStable(f.order, func(i, j int) bool {
		return f.line("services."+f.order[i]) < f.line("services."+f.order[j])
	})
	return f, nil
}

// legacyFormat turns a file of the version 1 format (services at the top,
// no services key; docker-compose 1.x reads it, compose v2 does not) into
// the compose specification's form: log_driver and log_opt become
// logging, net network_mode, a dockerfile beside a build folder build's.
func (f *composeFile) legacyFormat(top map[string]any) (map[string]any, error) {
	if _, ok := top["services"]; ok {
		return top, nil
	}
	if _, ok := top["version"]; ok {
		return top, nil // a versioned file without services: the loader says what is wrong
	}
	for name, v := range top {
		if _, ok := v.(map[string]any); !ok || strings.HasPrefix(name, "x-") {
			return top, nil // not a version 1 file either: let the loader say it
		}
	}
	f.legacy = true
	services := map[string]any{}
	for name, v := range top {
		s := maps.Clone(v.(map[string]any))
		if d, ok := s["log_driver"]; ok {
			logging := map[string]any{"driver": d}
			if o, ok := s["log_opt"]; ok {
				logging["options"] = o
			}
			s["logging"] = logging
			delete(s, "log_driver")
			delete(s, "log_opt")
		}
		if n, ok := s["net"]; ok {
			s["network_mode"] = n
			delete(s, "net")
		}
		if df, ok := s["dockerfile"]; ok {
			if ctxDir, ok := s["build"].(string); ok {
				s["build"] = map[string]any{"context": ctxDir, "dockerfile": df}
				delete(s, "dockerfile")
			}
		}
		services[name] = s
	}
	return map[string]any{"services": services}, nil
}

// environment reads .env and .env.example beside the file, below the
// process environment, as compose does for .env (compose ignores
// .env.example: it is where a repository shows what .env needs, and
// import falls back on it for what neither gives).
func (f *composeFile) environment(environ []string) error {
	f.env, f.from, f.blank = map[string]string{}, map[string]string{}, map[string]bool{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			f.env[k], f.from[k] = v, "the environment"
		}
	}
	for _, name := range []string{".env", ".env.example"} {
		p := filepath.Join(f.Dir, name)
		src, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		shown := filepath.Join(filepath.Dir(f.Shown), name)
		if err != nil {
			return catalog.Errors{{File: shown, Msg: err.Error(), Hint: "make it readable, or remove it"}}
		}
		vars, err := dotenv.UnmarshalBytesWithLookup(src, func(k string) (string, bool) {
			v, ok := f.env[k]
			return v, ok
		})
		if err != nil {
			return catalog.Errors{{File: shown, Msg: err.Error(), Hint: "write one NAME=value per line"}}
		}
		for k, v := range vars {
			if name == ".env.example" && v == "" {
				f.blank[k] = true
			}
			if _, set := f.env[k]; !set {
				f.env[k], f.from[k] = v, name
			}
		}
	}
	return nil
}

// projectName is compose's name for the project: the file's name key,
// else its folder's name.
func projectName(top map[string]any, dir string) string {
	if n, ok := top["name"].(string); ok && n != "" && !strings.Contains(n, "$") {
		return loader.NormalizeProjectName(n)
	}
	n := loader.NormalizeProjectName(filepath.Base(dir))
	if n == "" {
		n = "default"
	}
	return n
}

// interpolate substitutes variables in every string of v as compose does
// (without its type casts: a value stays the string it was written as,
// which compose casts again when it reads the rendered file), and records
// which variables each string refers to.
func (f *composeFile) interpolate(v any, path string) (any, error) {
	switch v := v.(type) {
	case string:
		var used []string
		out, err := template.Substitute(v, func(name string) (string, bool) {
			used = append(used, name)
			val, ok := f.env[name]
			return val, ok
		})
		if err != nil {
			return nil, catalog.Errors{f.errorAt(path, "set the variable in the environment, or in .env beside the file", "%v", err)}
		}
		if len(used) > 0 {
			f.vars[path] = used
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := f.interpolate(e, joinPath(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := f.interpolate(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// loaderPath finds the place a compose-go message is about.
var loaderPath = regexp.MustCompile(`'?services(?:\.|\[)([a-zA-Z0-9._-]+?)\]?\.([a-zA-Z0-9_.\[\]-]+?)'?(?::? |$)|service "([a-zA-Z0-9._-]+)"`)

// load runs compose-go's whole loader over the file (top, as written, and
// interpolated the same way), for the keys the catalog models, resolved:
// env_file read, extends merged, paths absolute, ports and volumes parsed.
// Every service counts, in a profile or not.
func (f *composeFile) load(ctx context.Context, top map[string]any) error {
	details := types.ConfigDetails{WorkingDir: f.Dir, Environment: f.env,
		ConfigFiles: []types.ConfigFile{{Filename: f.Path, Config: top}}}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(f.name, true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		msg = strings.TrimPrefix(msg, "validating "+f.Path+": ")
		path := ""
		if m := loaderPath.FindStringSubmatch(msg); m != nil {
			if m[3] != "" {
				path = "services." + m[3]
			} else {
				path = "services." + m[1] + "." + strings.NewReplacer("[", ".", "]", "").Replace(m[2])
				path = indexPath(path)
				if rest, ok := strings.CutPrefix(msg, m[0]); ok && rest != "" {
					msg = rest
				}
			}
		}
		// The compose specification marks a key it does not know so.
		if msg == "false schema" {
			msg = "unknown key: the compose specification has no such key here"
		}
		return catalog.Errors{f.errorAt(path, "compose cannot read it as it is: fix it so that `docker compose config` accepts it", "%s", msg)}
	}
	f.project = project
	return nil
}

// indexPath writes the numeric parts of a dotted path as list indices:
// services.web.ports.0 -> services.web.ports[0].
func indexPath(p string) string {
	parts := strings.Split(p, ".")
	var b strings.Builder
	for i, part := range parts {
		if _, err := strconv.Atoi(part); err == nil && i > 0 {
			b.WriteString("[" + part + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}
