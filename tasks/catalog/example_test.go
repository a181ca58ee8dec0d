package catalog_test

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

func ExampleLoad() {
	cat, err := catalog.Load(filepath.Join("..", "..", "testdata", "services.toml"))
	if err != nil {
		fmt.Println(err)
		return
	}
	env, err := cat.Env("dev")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range cat.All() {
		if port, published := s.HostPort(env.Ports); published {
			fmt.Printf("%-22s http://%s:%d%s\n", s.Name, env.Bind, port, s.Health)
		} else {
			fmt.Printf("%-22s (not published)\n", s.Name)
		}
	}
	// Output:
	// state-store            (not published)
	// template-service       http://127.0.0.1:9005/health
	// automation-service     http://127.0.0.1:9003/health
	// k8s-execution-service  http://127.0.0.1:9004/health
	// quality-fabric         http://127.0.0.1:9000/health
	// maestro-gateway        http://127.0.0.1:9080/health
}

// Every problem of a catalog comes back at once, each pinned to its line
// and key, with a hint saying what to do.
func ExampleErrors() {
	_, err := catalog.Load(filepath.Join("testdata", "bad", "cycle-2.toml"))
	var errs catalog.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Printf("line %d, %s: %s\n  fix: %s\n", e.Line, e.Key, e.Msg, e.Hint)
		}
	}
	// Output:
	// line 11, services[0].depends_on[0]: dependency cycle web -> api -> web
	//   fix: remove one of these depends_on entries: each service waits for the next to be healthy, so none would ever start
}
