package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
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
	TLSCA         string  `toml:"tls_ca"`
	TLSCert       string  `toml:"tls_cert"`
	TLSKey        string  `toml:"tls_key"`
	HealthTimeout string  `toml:"health_timeout"`
	DrainTimeout  string  `toml:"drain_timeout"`
	EndpointMode  *string `toml:"endpoint_mode"`
	PublishMode   *string `toml:"publish_mode"`
	// Pointers: an empty value written in the file is refused, which
	// needs it told apart from a key left out.
	SecretsFile    *string   `toml:"secrets_file"`
	SecretsCommand *[]string `toml:"secrets_command"`

	// A swarm's other nodes (nodes.go).
	Nodes []string `toml:"nodes"`
}

// rawService is an entry as decoded: the keys whose model is not what the
// file writes (pointers tell a key left out from a zero, forms with their
// own decoders, relative paths), then Written and Settings, the keys that
// are.
type rawService struct {
	Name        *string        `toml:"name"`
	Source      string         `toml:"source"`
	Port        *int           `toml:"port"`
	DevPort     *int           `toml:"dev_port"`
	ProdPort    *int           `toml:"prod_port"`
	Ports       map[string]int `toml:"ports"`
	Healthcheck rawHealthcheck `toml:"healthcheck"`
	DependsOn   rawDepends     `toml:"depends_on"`
	Compose     map[string]any `toml:"compose"`
	// ComposeEnv is by environment name.
	ComposeEnv     map[string]map[string]any `toml:"compose_env"`
	Secrets        rawSecrets                `toml:"secrets"`
	PrebuildInputs []string                  `toml:"prebuild_inputs"`
	Replicas       *int                      `toml:"replicas"`
	MaxPerNode     *int                      `toml:"max_replicas_per_node"`
	Volumes        []rawVolume               `toml:"volumes"`
	Checks         []rawCheck                `toml:"checks"`
	Written
	Settings
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
	// Decoding into a generic tree first separates TOML syntax errors from
	// values of the wrong type: the typed decode stops at the first wrong
	// type and cannot say which [[services]] element it was in.
	var tree map[string]any
	if _, err := toml.Decode(string(src), &tree); err != nil {
		return nil, Errors{tomlError(name, err)}
	}
	v := &validator{file: name, dir: filepath.Dir(abs), pos: scanPositions(string(src)), depKeys: map[*Service][]string{}, volIndex: map[*Service][]int{}}
	if v.typeCheck(tree, reflect.TypeFor[rawCatalog](), ""); len(v.errs) > 0 {
		return nil, v.sorted()
	}
	var raw rawCatalog
	md, err := toml.Decode(string(src), &raw)
	if err != nil {
		return nil, Errors{tomlError(name, err)}
	}
	v.unknownKeys(md.Undecoded())
	cat := v.build(&raw, abs)
	if len(v.errs) > 0 {
		return nil, v.sorted()
	}
	return cat, nil
}

// sorted orders the errors as they appear in the file, so that a user can
// fix them top to bottom; an error that follows from a misspelled key
// (dev_prot makes a service "have no dev_port") comes right after the
// misspelling, which it names, wherever its own line is.
func (v *validator) sorted() Errors {
	at := make(map[*Error]int, len(v.errs))
	for _, e := range v.errs {
		at[e] = e.Line
		for _, t := range v.typos {
			if t.err == e || !strings.HasPrefix(e.Key, t.entry) || !regexp.MustCompile(`\b`+regexp.QuoteMeta(t.meant)+`\b`).MatchString(e.Key+" "+e.Msg) {
				continue
			}
			at[e] = t.err.Line
			e.Hint += fmt.Sprintf("; probably because of the misspelled %q on line %d", t.leaf, t.err.Line)
			break
		}
	}
	sort.SliceStable(v.errs, func(i, j int) bool {
		a, b := v.errs[i], v.errs[j]
		if at[a] != at[b] {
			return at[a] < at[b]
		}
		return at[a] == a.Line && at[b] != b.Line // the misspelling before what follows from it
	})
	return v.errs
}

// typo is an unknown key close to a known one.
type typo struct {
	// entry is the key of the table holding it ("services[1]"), leaf the
	// key as written and meant the known key it is close to.
	entry, leaf, meant string
	err                *Error
}

var lineRE = regexp.MustCompile(`^toml: line (\d+) (?:\(last key "([^"]*)"\))?:? ?(.*)$`)

func tomlError(file string, err error) *Error {
	const hint = "the file is not valid TOML here; see https://toml.io for the syntax"
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if msg == "" {
			msg = strings.TrimPrefix(pe.Error(), "toml: ")
		}
		return &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: msg, Hint: hint}
	}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: m[2], Msg: m[3], Hint: hint}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: "), Hint: hint}
}

type validator struct {
	file string
	dir  string
	pos  positions
	errs Errors
	// targets are the environments whose host and dir passed, for
	// sameTargets.
	targets []deployTarget
	// depKeys are the keys of each entry's dependencies, in DependsOn's
	// order: depends_on[1] for the array form, depends_on.db for the table.
	depKeys map[*Service][]string
	// volIndex is, for each entry of Volumes, its index in the file's
	// volumes (entries refused at load are left out of Volumes).
	volIndex map[*Service][]int
	// typos are the unknown keys that look like misspelled known ones.
	typos []typo
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
	"services.checks":       CheckKeys,
	"infrastructure.checks": CheckKeys,
}

// CheckKeys are the keys of a check, name first, in the order the README
// lists them.
var CheckKeys = fieldNames(rawCheck{})

// freeTables are the keys of an entry whose tables hold compose's keys,
// which the compose checks judge, not the catalog's key lists.
var freeTables = map[string]bool{"compose": true, "compose_env": true, "healthcheck": true, "volumes": true}

// unknownKeys reports every place a key the catalog does not know is
// written. BurntSushi/toml names undecoded keys without array indices and
// once per element, so each is looked up again among the written positions.
func (v *validator) unknownKeys(keys []toml.Key) {
	unknown := map[string]bool{}
	var plain []string
	for _, k := range keys {
		p := k.String()
		if !unknown[p] {
			unknown[p] = true
			plain = append(plain, p)
		}
	}
	for _, p := range plain {
		parts := strings.Split(p, ".")
		if len(parts) > 2 && freeTables[parts[1]] {
			continue // inside a table of compose's own keys, checked as compose
		}
		// Keys inside an unknown table are not worth a message of their own.
		inUnknown := false
		for i := 1; i < len(parts); i++ {
			if unknown[strings.Join(parts[:i], ".")] {
				inUnknown = true
			}
		}
		if !inUnknown {
			v.unknownKey(parts)
		}
	}
}

func (v *validator) unknownKey(parts []string) {
	// Tables whose keys are free (env, ports, ...) decode whole; anything
	// undecoded sits in a struct, so its parent tells which struct.
	parent := strings.Join(parts[:len(parts)-1], ".")
	if len(parts) >= 2 && parts[0] == "environments" {
		parent = "environments.*"
	}
	leaf := parts[len(parts)-1]
	hint := "remove it, or see the README's catalog reference"
	if cands, ok := knownKeys[parent]; ok {
		if s := didYouMean(leaf, cands); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		} else {
			hint = "known keys here: " + strings.Join(cands, ", ")
		}
	}
	meant := didYouMean(leaf, knownKeys[parent])
	for _, key := range v.findIndexed(parts) {
		v.add(key, hint, "unknown key %q", leaf)
		if meant != "" {
			v.typos = append(v.typos, typo{entry: strings.TrimSuffix(key, "."+leaf), leaf: leaf, meant: meant, err: v.errs[len(v.errs)-1]})
		}
	}
}

// findIndexed maps an undecoded key such as services.dev_prot to every
// written place with indices (services[1].dev_prot, services[3].dev_prot),
// so that each gets its line.
func (v *validator) findIndexed(parts []string) []string {
	plain := strings.Join(parts, ".")
	// The elements of an unknown array (volume[0], or each [[servicez]])
	// are one unknown key, placed at its first line.
	first := map[string]int{}
	for p, line := range v.pos {
		if stripIndices(p) != plain {
			continue
		}
		p = trailingIndex.ReplaceAllString(p, "")
		if l, ok := first[p]; !ok || line < l {
			first[p] = line
		}
	}
	var found []string
	for p, line := range first {
		setOnce(v.pos, p, line)
		found = append(found, p)
	}
	if len(found) == 0 {
		// Not seen by the scanner: name it under its parent's first place.
		if len(parts) > 1 {
			if ps := v.findIndexed(parts[:len(parts)-1]); len(ps) > 0 {
				return []string{ps[0] + "." + parts[len(parts)-1]}
			}
		}
		return []string{plain}
	}
	sort.Slice(found, func(i, j int) bool {
		if li, lj := v.pos[found[i]], v.pos[found[j]]; li != lj {
			return li < lj
		}
		return found[i] < found[j]
	})
	return found
}

var (
	indexRE       = regexp.MustCompile(`\[\d+\]`)
	trailingIndex = regexp.MustCompile(`\[\d+\]$`)
)

func stripIndices(s string) string { return indexRE.ReplaceAllString(s, "") }

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
