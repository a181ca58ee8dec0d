package render_test

import (
	"fmt"
	"log"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// Render the dev environment of the repository's catalog and list the
// deployment folder it makes; render.Write would put it on disk.
func ExampleRender() {
	cat, err := catalog.Load("../../services.toml")
	if err != nil {
		log.Fatal(err)
	}
	env, err := cat.Env("dev")
	if err != nil {
		log.Fatal(err)
	}
	tree, err := render.Render(cat, env, render.Options{Build: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range tree {
		fmt.Printf("%s %s\n", f.Mode, f.Path)
	}
	// Output:
	// -rw------- .env
	// -rw-r--r-- .env.example
	// -rw------- .manifest
	// -rw------- automation-service/.env
	// -rw-r--r-- automation-service/.env.example
	// -rw-r--r-- automation-service/docker-compose.yml
	// -rwxr-xr-x deploy-all.sh
	// -rw-r--r-- docker-compose.yml
	// -rw------- infrastructure/.env
	// -rw-r--r-- infrastructure/.env.example
	// -rw-r--r-- infrastructure/docker-compose.yml
	// -rw------- k8s-execution-service/.env
	// -rw-r--r-- k8s-execution-service/.env.example
	// -rw-r--r-- k8s-execution-service/docker-compose.yml
	// -rw------- maestro-gateway/.env
	// -rw-r--r-- maestro-gateway/.env.example
	// -rw-r--r-- maestro-gateway/docker-compose.yml
	// -rw------- quality-fabric/.env
	// -rw-r--r-- quality-fabric/.env.example
	// -rw-r--r-- quality-fabric/docker-compose.yml
	// -rw------- template-service/.env
	// -rw-r--r-- template-service/.env.example
	// -rw-r--r-- template-service/docker-compose.yml
	// -rwxr-xr-x test-all.sh
}
