package catalog

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's key tables are the catalog's schema in words: each must name
// exactly the keys the loader knows (knownKeys, read from the raw types),
// so that a key added to a type without a line in the README, or a line
// left behind for a key removed, fails here.
func TestReadmeKeyTablesAreTheSchema(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for heading, table := range map[string]string{
		"### `[project]`":                             "project",
		"### `[environments.NAME]`":                   "environments.*",
		"### `[[services]]` and `[[infrastructure]]`": "services",
		"### `[[services.checks]]`":                   "services.checks",
	} {
		got := readmeKeys(t, readme, heading)
		want := slices.Sorted(slices.Values(knownKeys[table]))
		if !slices.Equal(got, want) {
			t.Errorf("README %s names %v\nthe catalog's %s keys are %v", heading, got, table, want)
		}
	}
	if !slices.Equal(knownKeys["services"], knownKeys["infrastructure"]) {
		t.Error("the README says infrastructure entries have the same keys as services")
	}
}

var readmeKey = regexp.MustCompile("`([a-z_]+)(\\.[A-Z]+)?`")

// readmeKeys are the keys in the first column of the first table after
// heading, sorted.
func readmeKeys(t *testing.T, readme, heading string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no heading %q", heading)
	}
	var keys []string
	inTable := false
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(cells[1], "---") || strings.TrimSpace(cells[1]) == "key" {
			continue
		}
		for _, m := range readmeKey.FindAllStringSubmatch(cells[1], -1) {
			keys = append(keys, m[1])
		}
	}
	slices.Sort(keys)
	return keys
}
