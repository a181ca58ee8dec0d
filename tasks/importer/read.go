package importer

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/maestro-platform/deploy/internal/tree"
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
	// env is what the file is interpolated with: .env, then .env.example
	// beside it. Never the process environment: what the operator's
	// shell holds (tokens, paths) must not end up in the catalog.
	env map[string]string
	// blank are the variables .env.example lists without a value: the
	// ones a repository leaves for each user to fill in, its secrets.
	blank map[string]bool
	// raw is the file interpolated, with services under "services";
	// vars holds, by path, the variables each string refers to, and
	// unset those of them that neither .env nor .env.example sets and
	// that have no default: compose would take them from the shell.
	raw   map[string]any
	vars  map[string][]string
	unset map[string][]string
	// values are, by path, the strings that refer to variables, as
	// interpolated.
	values map[string]string
	// away are, by service, the env_file and label_file entries outside
	// the file's folder: left out of what is loaded, and each a loss.
	away map[string][]awayFile
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

// readCompose reads, interpolates and loads one compose file.
func readCompose(ctx context.Context, path, shown string) (*composeFile, error) {
	f := &composeFile{Path: path, Shown: shown, Dir: filepath.Dir(path), vars: map[string][]string{}, unset: map[string][]string{},
		values: map[string]string{}}
	root, pos, err := parseYAML(path, shown)
	if err != nil {
		return nil, err
	}
	f.pos = pos
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
	if _, ok := top["include"]; ok {
		return nil, catalog.Errors{f.errorAt("include", "name each included file to import as a path of its own",
			"include: import reads the files it is given, one by one")}
	}
	if err := f.environment(); err != nil {
		return nil, err
	}
	f.name = projectName(top, f.Dir)
	interpolated, err := f.interpolate(top, "")
	if err != nil {
		return nil, err
	}
	f.raw = interpolated.(map[string]any)
	if top, err = f.vetFiles(top); err != nil {
		return nil, err
	}
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

// environment reads .env and .env.example beside the file, as compose
// does for .env (compose ignores .env.example: it is where a repository
// shows what .env needs, and import falls back on it for what .env does
// not give).
func (f *composeFile) environment() error {
	f.env, f.blank = map[string]string{}, map[string]bool{}
	for _, name := range []string{".env", ".env.example"} {
		p := filepath.Join(f.Dir, name)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		shown := filepath.Join(filepath.Dir(f.Shown), name)
		src, err := readBounded(p, shown)
		if err != nil {
			return err
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
				f.env[k] = v
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
	return tree.Map(v, path, func(v any, path string) (any, error) {
		s, ok := v.(string)
		if !ok {
			return v, nil
		}
		var used, unset []string
		lookup := func(name string) (string, bool) {
			used = append(used, name)
			val, ok := f.env[name]
			return val, ok
		}
		out, err := template.SubstituteWithOptions(s, lookup, template.WithoutLogging,
			template.WithReplacementFunction(func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
				if name := bareVariable(sub); name != "" {
					if _, ok := f.env[name]; !ok {
						unset = append(unset, name)
					}
				}
				return template.DefaultReplacementFunc(sub, m, cfg)
			}))
		if err != nil {
			return nil, catalog.Errors{f.errorAt(path, "set the variable in .env beside the file (import does not read the shell's environment)", "%v", err)}
		}
		if len(used) > 0 {
			f.vars[path] = used
			f.values[path] = out
		}
		if len(unset) > 0 {
			f.unset[path] = unset
		}
		return out, nil
	})
}

// bare is a variable reference without a default, a required mark or
// an alternative: $NAME or ${NAME}.
var bare = regexp.MustCompile(`^\$\{?([_A-Za-z][_A-Za-z0-9]*)\}?$`)

// bareVariable is the name a bare reference refers to, or "".
func bareVariable(ref string) string {
	if m := bare.FindStringSubmatch(ref); m != nil && strings.HasPrefix(ref, "${") == strings.HasSuffix(ref, "}") {
		return m[1]
	}
	return ""
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

// awayFile is an env_file or label_file entry naming a file outside the
// compose file's folder: the operator's, not the project's (~/.aws/...,
// /etc/...), which import does not read.
type awayFile struct{ what, key, file string }

// fileKeys are the service keys naming files compose reads into the
// service.
var fileKeys = []string{"env_file", "label_file"}

// vetFiles checks the files compose-go will read while loading: each
// env_file and label_file inside the folder is a regular file of bounded
// size, one outside it is taken out of what is loaded (and reported as a
// loss); each file a service extends is read within the bounds, and may
// name no env_file outside the folder either.
func (f *composeFile) vetFiles(top map[string]any) (map[string]any, error) {
	rawServices, _ := f.raw["services"].(map[string]any)
	topServices, _ := top["services"].(map[string]any)
	if len(rawServices) == 0 || len(topServices) == 0 {
		return top, nil
	}
	f.away = map[string][]awayFile{}
	services := maps.Clone(topServices)
	var errs catalog.Errors
	for _, name := range slices.Sorted(maps.Keys(rawServices)) {
		svc, _ := rawServices[name].(map[string]any)
		at := "services." + name
		for _, key := range fileKeys {
			files, isList := fileEntries(svc[key])
			var keep []int
			for i, p := range files {
				kat := at + "." + key
				if isList {
					kat = fmt.Sprintf("%s[%d]", kat, i)
				}
				abs := p
				if !filepath.IsAbs(abs) {
					abs = filepath.Join(f.Dir, p)
				}
				if p != "" && !within(f.Dir, abs) {
					f.away[name] = append(f.away[name], awayFile{what: key, key: kat, file: p})
					continue
				}
				keep = append(keep, i)
				if fi, err := os.Stat(abs); err == nil && (!fi.Mode().IsRegular() || fi.Size() > maxFileSize) {
					errs = append(errs, f.errorAt(kat, "name a regular file of a few kilobytes", "%s is not a regular file of at most %d KiB", p, maxFileSize>>10))
				}
			}
			if len(keep) == len(files) {
				continue
			}
			ts, _ := services[name].(map[string]any)
			ts = maps.Clone(ts)
			if l, ok := ts[key].([]any); ok {
				var kept []any
				for _, i := range keep {
					kept = append(kept, l[i])
				}
				ts[key] = kept
			}
			if len(keep) == 0 {
				delete(ts, key)
			}
			services[name] = ts
		}
		if err := f.vetExtends(at, f, svc, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	out := maps.Clone(top)
	out["services"] = services
	return out, nil
}

// vetExtends reads the file svc extends, if any, within the bounds, and
// refuses an env_file or label_file outside f's folder in it: compose-go
// reads those while merging, and that file cannot be changed here.
func (f *composeFile) vetExtends(at string, in *composeFile, svc map[string]any, depth int) *catalog.Error {
	ext, _ := svc["extends"].(map[string]any)
	file, _ := ext["file"].(string)
	if file == "" || depth > 10 {
		return nil
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(in.Dir, file)
	}
	other, err := readRaw(file, f)
	if err != nil {
		var ce catalog.Errors
		if errors.As(err, &ce) && len(ce) > 0 {
			return ce[0]
		}
		return f.errorAt(at+".extends", "extends names a file that cannot be read", "%v", err)
	}
	from, _ := ext["service"].(string)
	base, _ := other.raw["services"].(map[string]any)
	bsvc, _ := base[from].(map[string]any)
	for _, key := range fileKeys {
		files, _ := fileEntries(bsvc[key])
		for _, p := range files {
			abs := p
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(other.Dir, p)
			}
			if p != "" && !within(f.Dir, abs) {
				return f.errorAt(at+".extends", "keep the files a service reads in the compose file's folder, or give the values in environment:",
					"the service it extends (%s in %s) has %s %s, outside the compose file's folder: import takes nothing from the operator's files", from, shownPath(file), key, p)
			}
		}
	}
	return f.vetExtends(at, other, bsvc, depth+1)
}

// fileEntries are the paths of an env_file or label_file value (a string,
// or a list of strings and {path: ...} mappings), and whether it is a list.
func fileEntries(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, false
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			switch e := e.(type) {
			case string:
				out[i] = e
			case map[string]any:
				out[i], _ = e["path"].(string)
			}
		}
		return out, true
	}
	return nil, false
}

// within says whether path is inside dir, symbolic links followed.
func within(dir, path string) bool {
	resolve := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			return filepath.Join(r, filepath.Base(p))
		}
		return filepath.Clean(p)
	}
	rel, err := filepath.Rel(resolve(dir), resolve(path))
	return err == nil && filepath.IsLocal(rel)
}
