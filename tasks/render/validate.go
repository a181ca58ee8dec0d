package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/format"
	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v4"
)

// composeCheck is what a rendered compose file must load as. The bytes are
// taken from the tree when the check runs, so that what is checked is what
// gets written.
type composeCheck struct {
	path    string
	envPath string            // the .env it is used with, in the tree
	env     map[string]string // that .env's variables, as intended
	// want is each service's environment as the container must see it.
	want map[string]map[string]string
}

// testHookValidated, when set, is called with the path of every compose
// file validated: tests count what a write checks.
var testHookValidated func(path string)

// validateTree checks the compose files of tree that carry a check and for
// which need returns true, in parallel; it returns every failure.
func validateTree(tree Tree, need func(c *composeCheck) bool) error {
	var todo []*File
	for i := range tree {
		if c := tree[i].check; c != nil && need(c) {
			todo = append(todo, &tree[i])
		}
	}
	if len(todo) == 0 {
		return nil
	}
	errs := make([]error, len(todo))
	parallel(len(todo), func(i int) {
		f := todo[i]
		env, ok := tree.File(f.check.envPath)
		if !ok {
			errs[i] = fmt.Errorf("%s: the tree has no %s to go with it", f.Path, f.check.envPath)
			return
		}
		errs[i] = validateOne(f.check, f.Data, env.Data)
	})
	return errors.Join(errs...)
}

// validateOne reads a rendered compose file back the way compose v2 does
// up to its compose-spec schema check (YAML, interpolation with the .env
// it is used with, compose-go's schema.Validate), then makes the checks of
// compose-go's loader that the schema leaves out for what render writes:
// port and volume syntax, durations, healthcheck form, and that every
// network, volume and dependency named is declared. Last it checks that
// each container would see exactly the catalog's environment, so a quoting
// mistake is caught here and not in a running container.
//
// compose-go's full loader (includes, extends, normalisation, canonical
// form, decoding into its types) costs over ten times more; what it
// checks beyond this concerns keys render does not write. The tests hold
// this check to the loader: every file Render accepts loads there, files
// broken in each of the ways above are refused by both, and the fuzz
// target fails when Render refuses what the loader accepts.
func validateOne(c *composeCheck, data, envData []byte) error {
	if testHookValidated != nil {
		testHookValidated(c.path)
	}
	env, err := dotenv.ParseWithLookup(bytes.NewReader(envData), nil)
	if err != nil {
		return fmt.Errorf("%s: compose cannot read it: %w", c.envPath, err)
	}
	if !maps.Equal(env, c.env) {
		return fmt.Errorf("%s: compose would read back other values than rendered (keys %s)", c.envPath, diffKeys(env, c.env))
	}
	reject := func(err error) error {
		return fmt.Errorf("%s: compose-go rejects the rendered file: %w", c.path, err)
	}
	dict, plain, err := decodeYAML(data)
	if err != nil {
		return reject(err)
	}
	dict, err = interp.Interpolate(dict, interp.Options{Substitute: substitute, LookupValue: lookup(env)})
	if err != nil {
		return reject(err)
	}
	if err := validateSchema(dict, plain); err != nil {
		return reject(err)
	}
	if err := checkModel(dict); err != nil {
		return reject(err)
	}
	services, _ := dict["services"].(map[string]any)
	// A service behind a profile is one a folder's file only names (see
	// composeView.Elsewhere): `up` does not run it, as compose-go's loader
	// leaves it out of the project.
	services = maps.Clone(services)
	for name, svc := range services {
		if m, ok := svc.(map[string]any); ok && m["profiles"] != nil {
			delete(services, name)
		}
	}
	if len(services) != len(c.want) {
		return fmt.Errorf("%s: %d services after loading, rendered %d", c.path, len(services), len(c.want))
	}
	for name, want := range c.want {
		svc, ok := services[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: service %s missing after loading", c.path, name)
		}
		got, err := environment(svc["environment"])
		if err != nil {
			return fmt.Errorf("%s: service %s: %w", c.path, name, err)
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("%s: service %s: the container would see other environment values than the catalog's (keys %s)", c.path, name, diffKeys(got, want))
		}
	}
	return nil
}

// decodeYAML parses one YAML document into the plain maps and slices that
// compose-go's schema check takes. plain reports that every value is of a
// JSON type already (see validateSchema).
func decodeYAML(data []byte) (dict map[string]any, plain bool, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, false, err
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		// compose merges further documents in; render writes one.
		return nil, false, errors.New("more than one YAML document")
	}
	plain = true
	v, err := stringKeys(raw, "", &plain)
	if err != nil {
		return nil, false, err
	}
	dict, ok := v.(map[string]any)
	if !ok {
		return nil, false, errors.New("top-level object must be a mapping")
	}
	return dict, plain, nil
}

func stringKeys(v any, at string, plain *bool) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := stringKeys(e, at+"."+k, plain)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%s: non-string key %v", strings.TrimPrefix(at, "."), k)
			}
			c, err := stringKeys(e, at+"."+s, plain)
			if err != nil {
				return nil, err
			}
			out[s] = c
		}
		return out, nil
	case []any:
		for i, e := range v {
			c, err := stringKeys(e, at+"[]", plain)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	case nil, bool, int, float64, string:
	default:
		*plain = false // a timestamp, binary, big number: JSON would change it
	}
	return v, nil
}

var (
	specOnce sync.Once
	spec     *jsonschema.Schema
	specErr  error
)

// compiledSpec is compose-go's compose-spec schema (schema.Schema),
// compiled once the way compose-go compiles it.
func compiledSpec() (*jsonschema.Schema, error) {
	specOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema.Schema))
		if err != nil {
			specErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if specErr = c.AddResource("compose-spec.json", doc); specErr != nil {
			return
		}
		c.RegisterFormat(&jsonschema.Format{Name: "duration", Validate: func(v any) error {
			s, ok := v.(string)
			if !ok {
				return errors.New("expected string")
			}
			_, err := time.ParseDuration(s)
			return err
		}})
		spec, specErr = c.Compile("compose-spec.json")
	})
	return spec, specErr
}

// validateSchema checks dict against the compose-spec schema. compose-go's
// schema.Validate first turns the model into JSON and back, as the
// validator takes JSON types only; that costs as much as the check itself.
// A plain document (JSON types only, as rendered files decode to) goes to
// the same validator with the same schema as it is. Anything else, and any
// failure, goes through schema.Validate, whose verdict and words count.
func validateSchema(dict map[string]any, plain bool) error {
	if plain {
		if s, err := compiledSpec(); err == nil && s.Validate(dict) == nil {
			return nil
		}
	}
	return schema.Validate(dict)
}

// checkModel makes the checks of compose-go's loader (canonical transform
// and consistency check) that the schema does not make, on the kinds of
// values render writes. It runs after schema.Validate, so shapes are known.
func checkModel(dict map[string]any) error {
	services, _ := dict["services"].(map[string]any)
	networks, _ := dict["networks"].(map[string]any)
	volumes, _ := dict["volumes"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s, ok := services[name].(map[string]any)
		if !ok {
			return fmt.Errorf("services.%s must be a mapping", name)
		}
		at := "services." + name
		if s["image"] == nil && s["build"] == nil {
			return fmt.Errorf("service %q has neither an image nor a build context specified", name)
		}
		ports, _ := s["ports"].([]any)
		for i, p := range ports {
			if spec, ok := p.(string); ok {
				if _, err := types.ParsePortConfig(spec); err != nil {
					return fmt.Errorf("%s.ports[%d]: %w", at, i, err)
				}
			}
		}
		vols, _ := s["volumes"].([]any)
		for i, v := range vols {
			spec, ok := v.(string)
			if !ok {
				continue
			}
			vol, err := format.ParseVolume(spec)
			if err != nil {
				return fmt.Errorf("%s.volumes[%d]: %w", at, i, err)
			}
			if vol.Type == types.VolumeTypeVolume && vol.Source != "" {
				if _, ok := volumes[vol.Source]; !ok {
					return fmt.Errorf("service %q refers to undefined volume %s", name, vol.Source)
				}
			}
		}
		for _, n := range names(s["networks"]) {
			if _, ok := networks[n]; !ok {
				return fmt.Errorf("service %q refers to undefined network %s", name, n)
			}
		}
		for _, d := range names(s["depends_on"]) {
			if _, ok := services[d]; !ok {
				return fmt.Errorf("service %q depends on undefined service %q", name, d)
			}
		}
		if hc, ok := s["healthcheck"].(map[string]any); ok {
			if test, ok := hc["test"].([]any); ok && len(test) > 0 {
				switch test[0] {
				case "CMD", "CMD-SHELL", "NONE":
				default:
					return fmt.Errorf(`%s.healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"`, at)
				}
			}
			for _, k := range []string{"interval", "timeout", "start_period", "start_interval"} {
				if d, ok := hc[k].(string); ok {
					if _, err := time.ParseDuration(d); err != nil {
						return fmt.Errorf("%s.healthcheck.%s: %w", at, k, err)
					}
				}
			}
		}
	}
	return nil
}

// names returns the names of a compose list-or-mapping of references
// (networks, depends_on).
func names(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	case map[string]any:
		out = slices.Sorted(maps.Keys(v))
	}
	return out
}

// environment reads a service's environment, mapping or "KEY=value" list,
// as compose hands it to the container.
func environment(v any) (map[string]string, error) {
	got := map[string]string{}
	set := func(k string, val any) error {
		switch val := val.(type) {
		case nil:
			return fmt.Errorf("%s has no value after loading", k)
		case string:
			got[k] = val
		default:
			got[k] = fmt.Sprint(val)
		}
		return nil
	}
	switch v := v.(type) {
	case nil:
	case map[string]any:
		for k, val := range v {
			if err := set(k, val); err != nil {
				return nil, err
			}
		}
	case []any:
		for _, e := range v {
			s, _ := e.(string)
			k, val, ok := strings.Cut(s, "=")
			if !ok {
				return nil, fmt.Errorf("%s has no value after loading", k)
			}
			got[k] = val
		}
	default:
		return nil, fmt.Errorf("environment is a %T", v)
	}
	return got, nil
}

// diffKeys names the keys whose values differ, never the values: they may
// be secrets.
func diffKeys(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// substitute is compose-go's template.Substitute, which leaves a string
// without '$' as it is; skipping its regular expression there halves the
// cost of interpolation.
func substitute(s string, m template.Mapping) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	return template.Substitute(s, m)
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}
