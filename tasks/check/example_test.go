package check_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
)

// Run the declared checks of a one-service catalog against a service
// published on 127.0.0.1, and write the reports next to the deployment.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	src := `[project]
name = "demo"
[[services]]
name = "api"
source = "."
port = 8080
dev_port = ` + port + `
  [[services.checks]]
  name = "health"
  json_field = "status"
  json_equals = "ok"
`
	cat, err := catalog.Parse("services.toml", filepath.Join(dir, "services.toml"), []byte(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	env, _ := cat.Env("dev")
	// DeclaredOnly: no Docker engine here, so no container checks.
	rep, err := check.Run(context.Background(), cat, check.Target{Env: env}, check.Options{DeclaredOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d passed, %d failed\n", rep.Passed, rep.Failed)
	if err := check.WriteReports(dir, rep); err != nil {
		fmt.Println(err)
	}
	_, err = os.Stat(filepath.Join(dir, "reports", "testall.json"))
	fmt.Println("report written:", err == nil)
	// Output:
	// 1 passed, 0 failed
	// report written: true
}
