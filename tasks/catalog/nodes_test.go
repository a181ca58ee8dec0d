package catalog_test

import (
	"slices"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// A swarm environment names its other nodes; a service caps its replicas
// per node. Nothing else reads either key.
func TestSwarmNodesAndSpread(t *testing.T) {
	src := `
[project]
name = "shop"

[environments.demo]
ports = "prod"
engine = "swarm"
endpoint_mode = "dnsrr"
publish_mode = "host"
host = "ssh://deploy@manager.example.internal"
dir = "/srv/deployment"
nodes = ["ssh://deploy@worker-1.example.internal", "ssh://deploy@worker-2.example.internal:2222", "ssh://deploy@manager.example.internal:2222"]

[[services]]
name = "web"
image = "nginx:1"
port = 8080
dev_port = 9080
prod_port = 8080
replicas = 3
max_replicas_per_node = 1

[[services]]
name = "api"
image = "api:1"
port = 8081
dev_port = 9081
prod_port = 8081
`
	cat, err := catalog.Parse("services.toml", "/srv/services.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := cat.Env("demo")
	want := []string{"ssh://deploy@worker-1.example.internal", "ssh://deploy@worker-2.example.internal:2222", "ssh://deploy@manager.example.internal:2222"}
	if !slices.Equal(env.Nodes, want) {
		t.Errorf("nodes %v, want %v (another port of the manager's machine is another node)", env.Nodes, want)
	}
	if dev, _ := cat.Env("dev"); len(dev.Nodes) != 0 {
		t.Errorf("dev has nodes %v", dev.Nodes)
	}
	web, _ := cat.Service("web")
	api, _ := cat.Service("api")
	if web.MaxReplicasPerNode != 1 || api.MaxReplicasPerNode != 0 {
		t.Errorf("max_replicas_per_node: web %d (want 1), api %d (want 0: no cap)", web.MaxReplicasPerNode, api.MaxReplicasPerNode)
	}
}
