package render_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// trickyEnv are plain env values that land in compose files.
var trickyEnv = map[string]string{
	"DOLLAR": "a$b", "DOLLARS": "$$", "BRACE": "${X}", "BRACE_DEFAULT": "${X:-def}", "BARE_VAR": "$HOME",
	"SQ": "it's", "DQ": `say "hi"`, "HASH": "a #b", "HASH_START": "#start", "BACKSLASH": `C:\path\n`,
	"NEWLINE": "line1\nline2", "CRLF": "a\r\nb", "LEAD": "  lead", "TRAIL": "trail  ", "EMPTY": "",
	"YES": "yes", "NO": "no", "ON": "on", "OFF": "off", "NULL": "null", "TILDE": "~", "HEX": "0x1F",
	"EXP": "1e3", "TRUE": "true", "OCTAL": "0755", "COLON": "a: b", "DASH": "- x", "LIST": "[1, 2]",
	"MAP": "{a: 1}", "ANCHOR": "*a", "AMP": "&a", "PIPE": "|", "GT": ">", "PCT": "%x", "AT": "@x",
	"BACKTICK": "`id`", "UNICODE": "ü日本😀", "TAB": "a\tb", "NEL": "a\u0085b", "LS": "a\u2028b",
	"BOM": "\ufeffx", "CTRL": "a\x01b", "DEL": "a\x7fb", "QMARK": "? x", "BANG": "!tag",
	"MIXED": `$'"#\ ${a}`,
}

// trickySecrets are secret values that the .env files carry.
var trickySecrets = map[string]string{
	"S_PLAIN": "p@ss word", "S_DOLLAR": "a$b$$c $X", "S_HASH": "x #y", "S_QUOTES": `it's "quoted" \ back`,
	"S_NEWLINE": "multi\nline", "S_EDGE": "  edge  ", "S_YES": "yes", "S_EMPTY": "", "S_UNICODE": "ßecret✓",
	"S_CR": "a\rb", "S_TILDE": "~", "S_EQ": "a=b", "S_HASHONLY": "#", "S_TRAILING_BS": `end\`,
	// '$' with what quoting cannot keep literal in both compose versions:
	// carried as ${MAESTRO_DOLLAR} (render.DollarVar).
	"S_GENERATED": "p$w'\"d\\x\n${HOME}$$", "S_BRACE": "a${X}b", "S_DOLLAR_QUOTE": `it's $5`,
	"S_DOLLAR_BS": `back\slash $x \$`, "S_DOLLAR_CR": "$\r$",
}

func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlTable(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" = "+tomlString(m[k]))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// trickyCatalog writes a catalog with its own tiny source folder into a
// temporary folder and loads it the way the runner does.
func trickyCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src", "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`[project]
name = "tricky"

[[services]]
name = "yes"
source = "src"
port = 8080
dev_port = 18080
healthcheck = ["/app", "-check=$HOME's \"x\""]
env = %s
secrets = %s
`, tomlTable(trickyEnv), tomlTable(trickySecrets))
	file := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestTrickyValuesReachComposeByteExact renders values that YAML, compose
// interpolation and .env parsing all treat specially, and checks that the
// real compose CLI reads every one back exactly.
func TestTrickyValuesReachComposeByteExact(t *testing.T) {
	clis := composeCLIs(t)
	cat := trickyCatalog(t)
	tree := mustRender(t, cat, "dev", render.Options{Build: true})
	dir := filepath.Join(t.TempDir(), "deployment")
	if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for k, v := range trickyEnv {
		want[k] = v
	}
	for k, v := range trickySecrets {
		want[k] = v
	}
	for _, f := range tree {
		if !strings.HasSuffix(f.Path, ".yml") {
			continue
		}
		for _, v := range trickySecrets {
			if len(v) > 3 && strings.Contains(string(f.Data), v) {
				t.Errorf("secret %q in %s", v, f.Path)
			}
		}
	}
	for _, sub := range []string{".", "yes"} {
		for _, cli := range clis {
			out := runIn(t, filepath.Join(dir, sub), append(cli, "config")...)
			var cfg struct {
				Services map[string]struct {
					Environment map[string]*string `yaml:"environment"`
					Healthcheck struct {
						Test []string `yaml:"test"`
					} `yaml:"healthcheck"`
				} `yaml:"services"`
			}
			if err := yaml.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("%v: %v\n%s", cli, err, out)
			}
			svc, ok := cfg.Services["yes"]
			if !ok {
				t.Fatalf("%v: service \"yes\" missing:\n%s", cli, out)
			}
			// v1 prints '$' doubled again (its output is itself a compose
			// file); v2 prints it doubled too.
			unescape := func(s string) string { return strings.ReplaceAll(s, "$$", "$") }
			got := map[string]string{}
			for k, v := range svc.Environment {
				if v == nil {
					t.Errorf("%v %s: %s has no value", cli, sub, k)
					continue
				}
				got[k] = unescape(*v)
			}
			for k, w := range want {
				if k == "NEL" && cli[0] == "docker-compose" {
					// PyYAML loads "\u0085" right, but its emitter writes
					// NEL raw in `config` output, where it reads back as a
					// line fold: the printout is lossy, not the value.
					continue
				}
				if g, ok := got[k]; !ok {
					t.Errorf("%v %s: %s missing", cli, sub, k)
				} else if g != w {
					t.Errorf("%v %s: %s = %q, want %q", cli, sub, k, g, w)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%v %s: %d variables, want %d", cli, sub, len(got), len(want))
			}
			hc := strings.Join(svc.Healthcheck.Test, " ")
			if unescape(hc) != `CMD /app -check=$HOME's "x"` {
				t.Errorf("%v %s: healthcheck %q", cli, sub, hc)
			}
		}
	}
}
