package render_test

import (
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// max_replicas_per_node becomes the stack's placement limit and makes the
// service's updates stop-first; replicas and the limit enter the config
// hash of a swarm environment (swarm replaces what hashes differently),
// and nothing changes for compose.
func TestSpreadPlacement(t *testing.T) {
	cat := loadRepo(t)
	dnsrr(t, cat)
	cat.SecretsEnv = "demo"
	env := cat.Environments["demo"]
	ss, _ := cat.Service("state-store")
	hashes := func() map[string]string {
		t.Helper()
		h, err := render.ConfigHashes(cat, env, render.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	two := hashes()

	ss.MaxReplicasPerNode = 1
	capped := hashes()
	f, ok := mustRender(t, cat, "demo", render.Options{}).File(render.StackFile)
	if !ok {
		t.Fatal("no stack file")
	}
	stack := string(f.Data)
	i := strings.Index(stack, `"state-store":`)
	j := strings.Index(stack[i+1:], "\n  \"")
	block := stack[i : i+1+j]
	for _, want := range []string{"replicas: 2\n      placement:\n        max_replicas_per_node: 1\n", "order: stop-first"} {
		if !strings.Contains(block, want) {
			t.Errorf("state-store's block lacks %q:\n%s", want, block)
		}
	}
	if strings.Count(stack, "placement:") != 1 {
		t.Errorf("placement outside state-store:\n%s", stack)
	}

	// A placement of the passthrough's (constraints) carries the limit:
	// a stack file has one placement key per service, and docker stack
	// deploy reads it.
	ss.Compose = map[string]any{"deploy": map[string]any{"placement": map[string]any{"constraints": []any{"node.role == worker"}}}}
	f, _ = mustRender(t, cat, "demo", render.Options{}).File(render.StackFile)
	stack = string(f.Data)
	i = strings.Index(stack, `"state-store":`)
	j = strings.Index(stack[i+1:], "\n  \"")
	block = stack[i : i+1+j]
	if strings.Count(block, "placement:") != 1 || !strings.Contains(block, "max_replicas_per_node: 1") || !strings.Contains(block, "node.role == worker") {
		t.Errorf("state-store's block should have one placement with the constraint and the limit:\n%s", block)
	}
	ss.Compose = nil

	ss.Replicas = 3
	three := hashes()
	if two["state-store"] == capped["state-store"] || capped["state-store"] == three["state-store"] {
		t.Errorf("state-store's hash ignores its deploy settings: %s %s %s", two["state-store"], capped["state-store"], three["state-store"])
	}
	for _, name := range []string{"template-service", "quality-fabric"} {
		if two[name] != three[name] {
			t.Errorf("%s's hash changed with another service's replicas", name)
		}
	}
	// A compose environment does not run replicas: its hashes ignore them.
	env.Engine, env.EndpointMode, env.PublishMode = catalog.EngineCompose, "", ""
	c3 := hashes()
	ss.Replicas, ss.MaxReplicasPerNode = 1, 0
	if c1 := hashes(); c1["state-store"] != c3["state-store"] {
		t.Errorf("a compose environment's hash changed with replicas")
	}
}
