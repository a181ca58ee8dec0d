package composeschema

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The embedded schema is docker-compose 1.29.2's, unchanged: where that
// docker-compose is installed, its copy must be the same bytes.
func TestV1SchemaIsDockerCompose129s(t *testing.T) {
	installed, err := os.ReadFile(V1SchemaFile)
	if err != nil {
		t.Skipf("docker-compose 1.29's schema not installed here: %v", err)
	}
	if !bytes.Equal(installed, v1Schema) {
		t.Errorf("%s differs from the embedded compose-v1.29.2.json", V1SchemaFile)
	}
}

func TestProblems(t *testing.T) {
	svc := func(k string, v any) map[string]any {
		return map[string]any{"services": map[string]any{"web": map[string]any{"image": "x", k: v}}}
	}
	for _, tc := range []struct {
		name  string
		check func(map[string]any) (*Problem, error)
		doc   map[string]any
		want  string // "" = accepted
	}{
		{"spec accepts", Spec, svc("user", "1000"), ""},
		{"spec type", Spec, svc("user", 1000), "services.web.user: must be string, not number"},
		{"spec unknown", Spec, svc("restart_always", true), "services.web.restart_always: unknown key"},
		{"spec nested", Spec, svc("logging", map[string]any{"options": "x"}), "services.web.logging.options: must be object, not string"},
		{"v1 accepts", V1, svc("mem_limit", "64m"), ""},
		{"v1 unknown", V1, svc("gpus", "all"), "services.web.gpus: unknown key"},
		{"stack accepts", Stack, map[string]any{"version": "3.8", "services": map[string]any{"web": map[string]any{"image": "x", "user": "1"}}}, ""},
		{"stack unknown", Stack, map[string]any{"version": "3.8", "services": map[string]any{"web": map[string]any{"image": "x", "cpus": 0.5}}}, "services.web.cpus: additional property 'cpus' is not allowed"},
	} {
		p, err := tc.check(tc.doc)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		switch {
		case tc.want == "" && p != nil:
			t.Errorf("%s: refused: %v", tc.name, p)
		case tc.want != "" && (p == nil || !strings.Contains(p.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, p, tc.want)
		}
	}
}
