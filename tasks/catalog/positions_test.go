package catalog

import (
	"testing"
)

func TestScanPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int // path -> line; every one must be present
		none []string       // paths that must not be recorded
	}{
		{
			name: "nested array of tables restarts per parent",
			src: `[[services]]
name = "a"
  [[services.checks]]
  name = "a1"
  [[services.checks]]
  path = "/a2"
[[services]]
name = "b"
  [[services.checks]]
  status = 200
[[infrastructure]]
name = "db"
  [[infrastructure.checks]]
  kind = "network"
`,
			want: map[string]int{
				"services[0]":                      1,
				"services[0].name":                 2,
				"services[0].checks[0]":            3,
				"services[0].checks[0].name":       4,
				"services[0].checks[1].path":       6,
				"services[1]":                      7,
				"services[1].checks[0]":            9,
				"services[1].checks[0].status":     10,
				"infrastructure[0].name":           12,
				"infrastructure[0].checks[0]":      13,
				"infrastructure[0].checks[0].kind": 14,
			},
			none: []string{"services[1].checks[1]", "services[1].checks[2]", "services[2]"},
		},
		{
			name: "quoted keys and headers",
			src: `["environments"."demo"]
"host" = "ssh://x"
'dir' = "/srv"
[environments.'dev box']
"a.b" = 1
"a=b" = 2
`,
			want: map[string]int{
				"environments.demo":        1,
				"environments.demo.host":   2,
				"environments.demo.dir":    3,
				"environments.dev box":     4,
				"environments.dev box.a.b": 5,
				"environments.dev box.a=b": 6,
			},
		},
		{
			name: "dotted keys",
			src: `[[services]]
name = "a"
ports.metrics = 9100
env . LOG_LEVEL = "debug"
project.name = "x"
`,
			want: map[string]int{
				"services[0].ports.metrics": 3,
				"services[0].env.LOG_LEVEL": 4,
				"services[0].project.name":  5,
			},
			none: []string{"project.name"},
		},
		{
			name: "multi-line strings are skipped",
			src: `[[services]]
title = """
[[services]]
port = 1
"""
a = '''
[project]
name = "x" '''
b = """ends with quotes"""""
c = """escaped \""" still inside
[[services]]
"""
port = 8080
`,
			want: map[string]int{"services[0].title": 2, "services[0].a": 6, "services[0].b": 9,
				"services[0].c": 10, "services[0].port": 13},
			none: []string{"services[1]", "services[0].port = 1", "project", "project.name", "services[0].name"},
		},
		{
			name: "inline tables and arrays",
			src: `[[services]]
env = { A = "1", "B-C" = "x, y = z", D = { E = 2 } }
volumes = ["a:/a", "b:/b"]
depends_on = [
  "db", # a comment with = and [[brackets]]
  "cache",
]
checks = [
  { name = "h" },
  { name = "i", path = "/i" },
]
matrix = [[1, 2], [3]]
[[services]]
name = "second"
`,
			want: map[string]int{
				"services[0].env":            2,
				"services[0].env.A":          2,
				"services[0].env.B-C":        2,
				"services[0].env.D.E":        2,
				"services[0].volumes[1]":     3,
				"services[0].depends_on":     4,
				"services[0].depends_on[0]":  5,
				"services[0].depends_on[1]":  6,
				"services[0].checks[0].name": 9,
				"services[0].checks[1].path": 10,
				"services[0].matrix[1][0]":   12,
				"services[1].name":           14,
			},
			none: []string{"services[0].env.y", "services[0].depends_on[2]", "brackets"},
		},
		{
			name: "comments, blank lines and CRLF",
			src:  "# [[services]]\r\n\r\n[project] # [x]\r\nname = \"p\" # name = \"q\"\r\n\t[ project.sub ]\r\nk=1\r\n",
			want: map[string]int{"project": 3, "project.name": 4, "project.sub": 5, "project.sub.k": 6},
			none: []string{"services[0]", "x"},
		},
		{
			name: "first definition wins",
			src:  "[a]\nx = 1\n[b]\n[a.c]\nx = 2\n",
			want: map[string]int{"a": 1, "a.x": 2, "b": 3, "a.c": 4, "a.c.x": 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanPositions(tt.src)
			for k, line := range tt.want {
				if g, ok := got[k]; !ok || g != line {
					t.Errorf("%s: line %d (present %v), want %d", k, g, ok, line)
				}
			}
			for _, k := range tt.none {
				if _, ok := got[k]; ok {
					t.Errorf("%s recorded at line %d, want absent", k, got[k])
				}
			}
			if t.Failed() {
				t.Logf("all: %v", got)
			}
		})
	}
}

func TestPositionsLineFallsBackToParent(t *testing.T) {
	p := scanPositions("[[services]]\nname = \"a\"\nenv = { A = \"1\" }\n  [[services.checks]]\n  name = \"x\"\n")
	for key, want := range map[string]int{
		"services[0].port":           1, // not written: the service's header
		"services[0].env.A":          3,
		"services[0].env.B":          3, // an env key not written: the env table
		"services[0].checks[0].path": 4,
		"services[0].checks[0].name": 5,
		"services[0].depends_on[2]":  1,
		"environments.demo.host":     0, // nothing of it is in the file
	} {
		if got := p.line(key); got != want {
			t.Errorf("line(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	cands := fieldNames(rawEnv{})
	for word, want := range map[string]string{
		"hots":         "host",
		"prots":        "ports",
		"engin":        "engine",
		"keep_release": "keep_releases",
		"banana":       "",
	} {
		if got := didYouMean(word, cands); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", word, got, want)
		}
	}
	if d := editDistance("dev_prot", "dev_port"); d != 1 {
		t.Errorf("editDistance(dev_prot, dev_port) = %d, want 1 (a swap)", d)
	}
}
