package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultFile is the catalog's name when DEPLOY_CATALOG does not say otherwise.
const DefaultFile = "services.toml"

type rawCatalog struct {
	Project        rawProject        `toml:"project"`
	Environments   map[string]rawEnv `toml:"environments"`
	Services       []rawService      `toml:"services"`
	Infrastructure []rawService      `toml:"infrastructure"`
}

type rawProject struct {
	Name      string `toml:"name"`
	DeployDir string `toml:"deploy_dir"`
	Network   string `toml:"network"`
}

type rawEnv struct {
	Ports         string  `toml:"ports"`
	Host          string  `toml:"host"`
	Dir           string  `toml:"dir"`
	Engine        string  `toml:"engine"`
	Bind          *string `toml:"bind"`
	KeepReleases  *int    `toml:"keep_releases"`
	KnownHosts    string  `toml:"known_hosts"`
	Identity      string  `toml:"identity"`
	HealthTimeout string  `toml:"health_timeout"`
}

type rawService struct {
	Name            string            `toml:"name"`
	Title           string            `toml:"title"`
	Source          string            `toml:"source"`
	Dockerfile      string            `toml:"dockerfile"`
	Image           string            `toml:"image"`
	Port            int               `toml:"port"`
	DevPort         int               `toml:"dev_port"`
	ProdPort        int               `toml:"prod_port"`
	Ports           map[string]int    `toml:"ports"`
	Health          string            `toml:"health"`
	Healthcheck     []string          `toml:"healthcheck"`
	DependsOn       []string          `toml:"depends_on"`
	Env             map[string]string `toml:"env"`
	Secrets         map[string]string `toml:"secrets"`
	Prebuild        []string          `toml:"prebuild"`
	PrebuildEnv     map[string]string `toml:"prebuild_env"`
	PrebuildInputs  []string          `toml:"prebuild_inputs"`
	PrebuildOutputs []string          `toml:"prebuild_outputs"`
	Replicas        *int              `toml:"replicas"`
	Volumes         []string          `toml:"volumes"`
	Checks          []rawCheck        `toml:"checks"`
}

type rawCheck struct {
	Name       string `toml:"name"`
	Kind       string `toml:"kind"`
	Path       string `toml:"path"`
	Status     int    `toml:"status"`
	Contains   string `toml:"contains"`
	JSONField  string `toml:"json_field"`
	JSONEquals string `toml:"json_equals"`
	Timeout    string `toml:"timeout"`
	Retries    *int   `toml:"retries"`
}

// Load reads and validates the catalog at path. On any problem it returns
// Errors holding every problem found, each with file, line and key.
func Load(path string) (*Catalog, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, Errors{{File: path, Msg: "catalog file not found",
				Hint: "create it (see README, 'The catalog') or point DEPLOY_CATALOG at it"}}
		}
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return Parse(path, abs, src)
}

// Parse validates catalog source. name is how the file is named in errors;
// abs is its absolute path, whose folder relative paths are resolved against.
func Parse(name, abs string, src []byte) (*Catalog, error) {
	var raw rawCatalog
	md, err := toml.Decode(string(src), &raw)
	if err != nil {
		return nil, Errors{tomlError(name, err)}
	}
	v := &validator{file: name, dir: filepath.Dir(abs), pos: scanPositions(string(src))}
	for _, k := range md.Undecoded() {
		v.unknownKey(k)
	}
	cat := v.build(&raw, abs)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	return cat, nil
}

func tomlError(file string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if msg == "" {
			msg = strings.TrimPrefix(pe.Error(), "toml: ")
		}
		return &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: msg,
			Hint: "the file is not valid TOML here"}
	}
	return &Error{File: file, Msg: err.Error()}
}

type validator struct {
	file string
	dir  string
	pos  positions
	errs Errors
}

func (v *validator) add(key, hint, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: v.pos.line(key), Key: key,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

var knownKeys = map[string][]string{
	"":                      {"project", "environments", "services", "infrastructure"},
	"project":               fieldNames(rawProject{}),
	"environments.*":        fieldNames(rawEnv{}),
	"services":              fieldNames(rawService{}),
	"infrastructure":        fieldNames(rawService{}),
	"services.checks":       fieldNames(rawCheck{}),
	"infrastructure.checks": fieldNames(rawCheck{}),
}

func (v *validator) unknownKey(k toml.Key) {
	parts := []string(k)
	// Tables whose keys are free (env, ports, ...) decode whole; anything
	// undecoded sits in a struct, so its parent tells which struct.
	parent := strings.Join(parts[:len(parts)-1], ".")
	if len(parts) >= 2 && parts[0] == "environments" {
		parent = "environments.*"
	}
	leaf := parts[len(parts)-1]
	key := v.findIndexed(parts)
	hint := "remove it, or see the README's catalog reference"
	if cands, ok := knownKeys[parent]; ok {
		if s := didYouMean(leaf, cands); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		} else {
			hint = "known keys: " + strings.Join(cands, ", ")
		}
	}
	v.add(key, hint, "unknown key %q", leaf)
}

// findIndexed maps an undecoded key such as services.dev_prot to the first
// written place with indices, services[3].dev_prot, so it gets a line.
func (v *validator) findIndexed(parts []string) string {
	plain := strings.Join(parts, ".")
	best, bestLine := plain, 0
	for p, line := range v.pos {
		if stripIndices(p) == plain && (bestLine == 0 || line < bestLine) {
			best, bestLine = p, line
		}
	}
	return best
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func stripIndices(s string) string { return indexRE.ReplaceAllString(s, "") }

func fieldNames(v any) []string {
	var out []string
	for _, f := range reflectFields(v) {
		out = append(out, f)
	}
	return out
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

func (v *validator) path(p string) string {
	p = expandHome(p)
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.dir, p)
}

func (v *validator) duration(key, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		v.add(key, `write a Go duration such as "30s" or "2m"`, "invalid duration %q", s)
		return def
	}
	return d
}
