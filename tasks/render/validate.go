package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/dotenv"
	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// validate loads every rendered compose file back the way compose v2
// would, with its .env, and checks that each container would see exactly
// the catalog's environment: a quoting mistake is caught here, not in a
// running container.
func validate(project string, checks []composeCheck) error {
	errs := make([]error, len(checks))
	workers := min(runtime.GOMAXPROCS(0), len(checks))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				errs[i] = validateOne(project, &checks[i])
			}
		})
	}
	for i := range checks {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// stackVersion is the one line a stack file has that compose-go only warns
// about (on stderr, once per process); it is dropped before loading.
const stackVersion = "version: \"3.8\"\n"

func validateOne(project string, c *composeCheck) error {
	env := c.env
	if c.envData != nil {
		got, err := dotenv.ParseWithLookup(bytes.NewReader(c.envData), nil)
		if err != nil {
			return fmt.Errorf("%s: compose cannot read it: %w", c.envPath, err)
		}
		if !maps.Equal(got, c.env) {
			return fmt.Errorf("%s: compose would read back other values than rendered (keys %s)", c.envPath, diffKeys(got, c.env))
		}
		env = got
	}
	data := c.data
	if c.path == StackFile {
		data = bytes.Replace(data, []byte(stackVersion), nil, 1)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "/",
		ConfigFiles: []types.ConfigFile{{Filename: c.path, Content: data}},
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName(project, true)
		// Render puts no variable where compose casts a type (ports,
		// counts, booleans), so the per-node cast lookup, which costs
		// more than the rest of the load, has nothing to do.
		o.Interpolate = &interp.Options{Substitute: template.Substitute, LookupValue: lookup(env)}
		// Build contexts are absolute already; resolving paths only costs.
		o.ResolvePaths = false
	})
	if err != nil {
		return fmt.Errorf("%s: compose-go rejects the rendered file: %w", c.path, err)
	}
	for name, want := range c.want {
		svc, ok := p.Services[name]
		if !ok {
			return fmt.Errorf("%s: service %s missing after loading", c.path, name)
		}
		got := map[string]string{}
		for k, v := range svc.Environment {
			if v == nil {
				return fmt.Errorf("%s: service %s: %s has no value after loading", c.path, name, k)
			}
			got[k] = *v
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("%s: service %s: the container would see other environment values than the catalog's (keys %s)", c.path, name, diffKeys(got, want))
		}
	}
	return nil
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

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}
