package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/schema"
)

// TestSchemaFastPathAgrees holds validateSchema's direct path to
// compose-go's schema.Validate on rendered files and on broken ones.
func TestSchemaFastPathAgrees(t *testing.T) {
	goldens, err := filepath.Glob("testdata/golden/*/*/docker-compose.yml")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden compose files: %v", err)
	}
	top, _ := filepath.Glob("testdata/golden/*/docker-compose.yml")
	goldens = append(goldens, top...)
	breaks := []struct{ old, new string }{
		{"", ""},
		{"restart: unless-stopped", "restart: 12"},
		{"restart: unless-stopped", "restart: unless-stopped\n    restart_always: true"},
		{"retries: 5", `retries: "five"`},
		{"interval: 2s", "interval: 2 parsecs"},
		{"    networks:\n      - \"platform\"", "    networks: 7"},
		{"driver: bridge", "driver: [bridge]"},
	}
	spec, err := compiledSpec()
	if err != nil {
		t.Fatal(err)
	}
	valid, invalid := 0, 0
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range breaks {
			doc := strings.Replace(string(data), b.old, b.new, 1)
			if b.old != "" && doc == string(data) {
				continue
			}
			dict, plain, err := decodeYAML([]byte(doc))
			if err != nil || !plain {
				t.Fatalf("%s with %q: plain=%v %v", g, b.new, plain, err)
			}
			fast := spec.Validate(dict)
			slow := schema.Validate(dict)
			if (fast == nil) != (slow == nil) {
				t.Errorf("%s with %q: direct %v, compose-go %v", g, b.new, fast, slow)
			}
			if (validateSchema(dict, true) == nil) != (slow == nil) {
				t.Errorf("%s with %q: validateSchema disagrees with compose-go", g, b.new)
			}
			if slow == nil {
				valid++
			} else {
				invalid++
			}
		}
	}
	if valid < len(goldens) || invalid < len(goldens) {
		t.Errorf("%d valid and %d invalid documents checked: the breaks no longer apply", valid, invalid)
	}
}
