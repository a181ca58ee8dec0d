package secrets_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/secrets"
)

// marker is the value the tests look for where no value may appear;
// markerWord is one that reads as a variable name after a '$'.
const (
	marker     = "M4RKER-s3cret-never-shown"
	markerWord = "M4RKERs3cretNeverShown"
)

// fixture is a catalog in a folder of its own, with its secrets file and
// secrets_command stand-in beside it.
type fixture struct {
	dir string
	cat *catalog.Catalog
}

// newFixture writes services.toml from the given environments and
// services tables and loads it. Every name the tests use is unset in the
// process environment first, so that the caller's shell cannot answer.
func newFixture(t *testing.T, toml string) *fixture {
	t.Helper()
	dir := t.TempDir()
	src := "[project]\nname = \"shop\"\n\n" + toml
	path := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cat.All() {
		for _, n := range s.SecretNames {
			unsetenv(t, n)
		}
	}
	return &fixture{dir: dir, cat: cat}
}

func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value after the test
	os.Unsetenv(name)
}

func (f *fixture) env(t *testing.T, name string) *catalog.Environment {
	t.Helper()
	e, err := f.cat.Env(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// file writes the environment's secrets file with the given mode.
func (f *fixture) file(t *testing.T, env, body string, mode os.FileMode) string {
	t.Helper()
	p := f.env(t, env).SecretsFile
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode passes the umask
		t.Fatal(err)
	}
	return p
}

// script writes the stand-in for a secrets_command: a small shell script
// in the catalog's folder, which secrets_command names as ./secrets.sh.
func (f *fixture) script(t *testing.T, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "secrets.sh"), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// snapshot is every service's Secrets and the catalog's SecretsEnv, to
// see that a failed Resolve changed nothing.
func snapshot(cat *catalog.Catalog) string {
	var b strings.Builder
	for _, s := range cat.All() {
		fmt.Fprintf(&b, "%s=%v;", s.Name, maps.Clone(s.Secrets))
	}
	return b.String() + "env=" + cat.SecretsEnv
}

func origin(t *testing.T, res *secrets.Resolution, name string) secrets.Origin {
	t.Helper()
	for _, o := range res.Origins {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("no origin for %s in %v", name, res.Lines())
	return secrets.Origin{}
}

const localWithCommand = `[environments.dev]
ports = "dev"
secrets_command = ["./secrets.sh"]

[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = { ORDER_A = "default-a", ORDER_B = "default-b", ORDER_C = "default-c", ORDER_D = "default-d" }
`

// The process environment beats the secrets file, which beats the
// secrets_command, which beats the catalog's dev default.
func TestOrder(t *testing.T) {
	f := newFixture(t, localWithCommand)
	t.Setenv("ORDER_A", "env-a")
	file := f.file(t, "dev", "ORDER_A=file-a\nORDER_B=file-b\n", 0o600)
	f.script(t, `printf 'ORDER_A=cmd-a\nORDER_B=cmd-b\nORDER_C=cmd-c\n'`)

	res, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	web, _ := f.cat.Service("web")
	want := map[string]string{"ORDER_A": "env-a", "ORDER_B": "file-b", "ORDER_C": "cmd-c", "ORDER_D": "default-d"}
	if !reflect.DeepEqual(web.Secrets, want) {
		t.Errorf("Secrets = %v, want %v", web.Secrets, want)
	}
	for name, w := range map[string]struct {
		src   secrets.Source
		where string
	}{
		"ORDER_A": {secrets.FromEnv, "environment variable ORDER_A"},
		"ORDER_B": {secrets.FromFile, "secrets file " + file},
		"ORDER_C": {secrets.FromCommand, "secrets_command " + filepath.Join(f.dir, "secrets.sh")},
		"ORDER_D": {secrets.FromDefault, "dev default in services.toml (not used for remote environments) at " + f.cat.File + ":13: services[0].secrets.ORDER_D"},
	} {
		o := origin(t, res, name)
		if o.Source != w.src || o.Where != w.where || !reflect.DeepEqual(o.Services, []string{"web"}) {
			t.Errorf("%s: origin %+v, want %s from %q", name, o, w.src, w.where)
		}
	}
	if f.cat.SecretsEnv != "dev" || res.Env != "dev" || res.Remote || !res.FileFound || !res.CommandRan {
		t.Errorf("SecretsEnv %q, resolution %+v", f.cat.SecretsEnv, res)
	}
	// Resolve gives what Load gave back to the defaults, untouched.
	if web.SecretDefaults["ORDER_A"] != "default-a" {
		t.Error("Resolve rewrote the catalog's defaults")
	}
}

// Each source alone gives the value; a source that is not asked is not
// needed.
func TestEachSource(t *testing.T) {
	const svc = `
[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
`
	for name, tc := range map[string]struct {
		toml   string
		setup  func(t *testing.T, f *fixture)
		source secrets.Source
	}{
		"env": {`secrets = ["ONLY_TOKEN"]`, func(t *testing.T, f *fixture) { t.Setenv("ONLY_TOKEN", "v") }, secrets.FromEnv},
		"file": {`secrets = ["ONLY_TOKEN"]`, func(t *testing.T, f *fixture) {
			f.file(t, "dev", "# a comment\nexport ONLY_TOKEN='v'\n", 0o600)
		}, secrets.FromFile},
		"command": {`secrets = ["ONLY_TOKEN"]`, func(t *testing.T, f *fixture) { f.script(t, `echo ONLY_TOKEN=v`) }, secrets.FromCommand},
		"default": {`secrets = { ONLY_TOKEN = "v" }`, func(t *testing.T, f *fixture) {}, secrets.FromDefault},
	} {
		t.Run(name, func(t *testing.T) {
			env := "[environments.dev]\nports = \"dev\"\n"
			if tc.source == secrets.FromCommand {
				env += "secrets_command = [\"./secrets.sh\"]\n"
			}
			f := newFixture(t, env+svc+tc.toml+"\n")
			tc.setup(t, f)
			res, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
			if err != nil {
				t.Fatal(err)
			}
			web, _ := f.cat.Service("web")
			if web.Secrets["ONLY_TOKEN"] != "v" || origin(t, res, "ONLY_TOKEN").Source != tc.source {
				t.Errorf("value %q from %s, want v from %s", web.Secrets["ONLY_TOKEN"], origin(t, res, "ONLY_TOKEN").Source, tc.source)
			}
		})
	}
}

// The secrets_command runs only when the environment and the file leave
// something missing.
func TestCommandRunsOnlyWhenNeeded(t *testing.T) {
	f := newFixture(t, localWithCommand)
	f.script(t, "touch ran\necho ORDER_A=cmd\n")
	for _, n := range []string{"ORDER_A", "ORDER_B", "ORDER_C", "ORDER_D"} {
		t.Setenv(n, "from-env")
	}
	res, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ran")); err == nil || res.CommandRan {
		t.Errorf("the command ran although nothing was missing (CommandRan %v)", res.CommandRan)
	}
}

// secrets_command is an argument list: an argument reaches the program
// as one word, byte for byte, and nothing in it is run by a shell.
func TestCommandArgumentList(t *testing.T) {
	const arg = `two words; $(touch pwned) && echo "quoted" | cat`
	f := newFixture(t, `[environments.dev]
ports = "dev"
secrets_command = ["./secrets.sh", "two words; $(touch pwned) && echo \"quoted\" | cat", "second"]

[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = ["ARG_ONE", "ARG_COUNT"]
`)
	f.script(t, `printf "ARG_ONE='%s'\nARG_COUNT=%s\n" "$1" "$#"`)
	if _, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev")); err != nil {
		t.Fatal(err)
	}
	web, _ := f.cat.Service("web")
	if web.Secrets["ARG_ONE"] != arg || web.Secrets["ARG_COUNT"] != "2" {
		t.Errorf("the program got %q and %s arguments, want %q and 2", web.Secrets["ARG_ONE"], web.Secrets["ARG_COUNT"], arg)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "pwned")); err == nil {
		t.Error("a shell ran the argument")
	}
}

// A failing command stops Resolve with its last line of standard error,
// never its standard output, and with no value in it.
func TestCommandFails(t *testing.T) {
	f := newFixture(t, localWithCommand)
	f.script(t, `printf 'ORDER_A=%s\nORDER_B="%s"\n' `+marker+` `+marker+`
echo "fetching..." >&2
echo "vault: token `+marker+` expired" >&2
exit 1
`)
	before := snapshot(f.cat)
	_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
	var se *secrets.SourceError
	if !errors.As(err, &se) || se.Source != secrets.FromCommand || se.ExitStatus() != 1 {
		t.Fatalf("err = %T %v, want a *SourceError of the command, exit status 1", err, err)
	}
	msg := err.Error()
	for _, want := range []string{`environment "dev"`, "secrets.sh", "exit status 1", "vault: token *** expired"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, marker) || strings.Contains(msg, "fetching") {
		t.Errorf("error %q shows the output or more than the last line", msg)
	}
	if snapshot(f.cat) != before {
		t.Error("a failed Resolve changed the catalog")
	}
}

func TestCommandProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		script string
		argv   string
		want   string
	}{
		"not found":     {"", `"no-such-program-maestro-test"`, `cannot run "no-such-program-maestro-test"`},
		"too much":      {"yes ORDER_A=" + marker + " | head -c 1100000\n", `"./secrets.sh"`, "more than 1 MB"},
		"not dotenv":    {"echo 'ORDER_A=\"" + marker + "'\n", `"./secrets.sh"`, "its standard output is not valid dotenv at line"},
		"interpolation": {"echo 'ORDER_A=ab$" + marker + "'\n", `"./secrets.sh"`, "a value holds a '$' outside single quotes"},
		"silent fail":   {"exit 3\n", `"./secrets.sh"`, "exit status 3); printed nothing on its standard error"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, strings.Replace(localWithCommand, `["./secrets.sh"]`, "["+tc.argv+"]", 1))
			if tc.script != "" {
				f.script(t, tc.script)
			}
			before := snapshot(f.cat)
			_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
			var se *secrets.SourceError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a *SourceError with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), marker) {
				t.Errorf("error shows a value: %v", err)
			}
			if snapshot(f.cat) != before {
				t.Error("a failed Resolve changed the catalog")
			}
		})
	}
}

// A secrets file group or others may read or write is refused, naming
// the file, its mode and the fix; a private one is read, a missing one is
// no error.
func TestFileMode(t *testing.T) {
	const toml = `[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = { FILE_TOKEN = "default" }
`
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			f := newFixture(t, toml)
			path := f.file(t, "dev", "FILE_TOKEN="+marker+"\n", mode)
			before := snapshot(f.cat)
			_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
			var se *secrets.SourceError
			if !errors.As(err, &se) || se.Source != secrets.FromFile || se.ExitStatus() != 2 {
				t.Fatalf("err = %T %v, want a *SourceError of the file, exit status 2", err, err)
			}
			for _, want := range []string{path, fmt.Sprintf("mode %04o", mode), "chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), marker) || snapshot(f.cat) != before {
				t.Errorf("the error shows the value, or the catalog changed: %v", err)
			}
		})
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o700} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			f := newFixture(t, toml)
			f.file(t, "dev", "FILE_TOKEN=from-file\n", mode)
			if _, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev")); err != nil {
				t.Fatal(err)
			}
			if web, _ := f.cat.Service("web"); web.Secrets["FILE_TOKEN"] != "from-file" {
				t.Errorf("value %q, want the file's", web.Secrets["FILE_TOKEN"])
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		f := newFixture(t, toml)
		res, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
		if err != nil || res.FileFound {
			t.Fatalf("missing file: %v, found %v", err, res.FileFound)
		}
	})
	t.Run("folder", func(t *testing.T) {
		f := newFixture(t, toml)
		if err := os.MkdirAll(f.env(t, "dev").SecretsFile, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
		if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
			t.Fatalf("err = %v, want a refusal of a folder", err)
		}
	})
	t.Run("not dotenv", func(t *testing.T) {
		f := newFixture(t, toml)
		f.file(t, "dev", "OTHER=1\nFILE_TOKEN=\""+marker+"\n", 0o600)
		_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
		if err == nil || !strings.Contains(err.Error(), "not valid dotenv at line") || strings.Contains(err.Error(), marker) {
			t.Fatalf("err = %v, want the line number and no value", err)
		}
	})
	t.Run("dollar", func(t *testing.T) {
		f := newFixture(t, toml)
		f.file(t, "dev", "FILE_TOKEN=abc${"+strings.ReplaceAll(marker, "-", "_")+"}\n", 0o600)
		_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
		if err == nil || !strings.Contains(err.Error(), "single quotes") || strings.Contains(err.Error(), "abc") {
			t.Fatalf("err = %v, want a refusal to expand $, showing nothing of the value", err)
		}
	})
}

// A secret found nowhere stops Resolve with every missing one named, the
// services needing it, the environment and each place looked in; nothing
// changes.
func TestMissing(t *testing.T) {
	f := newFixture(t, `[environments.dev]
ports = "dev"

[[infrastructure]]
name = "db"
image = "postgres:16"
port = 5432
secrets = ["DB_PASSWORD"]

[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = ["DB_PASSWORD", "FOUND_TOKEN", "EMPTY_TOKEN"]

[[services]]
name = "api"
image = "busybox:1"
port = 81
dev_port = 9081
secrets = { EMPTY_TOKEN = "api-default" }
`)
	t.Setenv("FOUND_TOKEN", marker)
	t.Setenv("EMPTY_TOKEN", "")
	file := f.file(t, "dev", "OTHER=1\n", 0o600)
	before := snapshot(f.cat)
	_, err := secrets.Resolve(context.Background(), f.cat, f.env(t, "dev"))
	var me *secrets.MissingError
	if !errors.As(err, &me) {
		t.Fatalf("err = %T %v, want a *MissingError", err, err)
	}
	var status interface{ ExitStatus() int }
	if !errors.As(err, &status) || status.ExitStatus() != 2 {
		t.Errorf("exit status %v, want 2", status)
	}
	if got := me.Names(); !reflect.DeepEqual(got, []string{"DB_PASSWORD", "EMPTY_TOKEN"}) {
		t.Errorf("missing %v, want DB_PASSWORD and EMPTY_TOKEN", got)
	}
	msg := err.Error()
	for _, want := range []string{
		`environment "dev": 2 secrets found nowhere: DB_PASSWORD, EMPTY_TOKEN`,
		"DB_PASSWORD, needed by db, web; looked for in:",
		"- environment variable DB_PASSWORD: not set",
		"- secrets file " + file + ": exists, does not define it",
		`- no secrets_command for environment "dev"`,
		"- the catalog gives no dev default",
		// api has a default; web declares the name without one and
		// does not borrow api's.
		"EMPTY_TOKEN, needed by web; looked for in:",
		"- environment variable EMPTY_TOKEN: given, but empty",
		"the catalog's dev default belongs to other services (" + f.cat.File + ":25: services[1].secrets.EMPTY_TOKEN); web declares it without one",
		"chmod 600",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, marker) || strings.Contains(msg, "api-default") || strings.Contains(msg, "FOUND_TOKEN") {
		t.Errorf("error shows a value or a secret that was found:\n%s", msg)
	}
	if snapshot(f.cat) != before {
		t.Error("a failed Resolve changed the catalog")
	}
}

const remoteCatalog = `[environments.demo]
ports = "dev"
host = "ssh://deploy@demo.example.internal"
dir = "/srv/deployment"

[[services]]
name = "gateway"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = { GATEWAY_API_TOKEN = "change-me-dev-token" }
`

// A remote environment never takes the catalog's literal: without a value
// from outside it is missing, and the error says why and where the
// literal is.
func TestRemoteNeverUsesLiteral(t *testing.T) {
	f := newFixture(t, remoteCatalog)
	demo := f.env(t, "demo")
	_, err := secrets.Resolve(context.Background(), f.cat, demo)
	var me *secrets.MissingError
	if !errors.As(err, &me) || !me.Remote {
		t.Fatalf("err = %v, want a *MissingError for the remote environment", err)
	}
	for _, want := range []string{
		`environment "demo": 1 secret found nowhere: GATEWAY_API_TOKEN`,
		"GATEWAY_API_TOKEN, needed by gateway",
		"- secrets file " + demo.SecretsFile + ": does not exist",
		"- the catalog's dev default is not used for remote environments (" + f.cat.File + ":14: services[0].secrets.GATEWAY_API_TOKEN)",
		"or set secrets_command under [environments.demo]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "change-me-dev-token") {
		t.Errorf("error shows the literal:\n%v", err)
	}
	gw, _ := f.cat.Service("gateway")
	if f.cat.SecretsEnv != "" || gw.Secrets["GATEWAY_API_TOKEN"] != "change-me-dev-token" {
		t.Error("a failed Resolve changed the catalog")
	}

	// With a value from outside, that value, and the render of the
	// remote environment carries it and not the literal.
	f.file(t, "demo", "GATEWAY_API_TOKEN='from-the-file'\n", 0o600)
	res, err := secrets.Resolve(context.Background(), f.cat, demo)
	if err != nil {
		t.Fatal(err)
	}
	if gw.Secrets["GATEWAY_API_TOKEN"] != "from-the-file" || origin(t, res, "GATEWAY_API_TOKEN").Source != secrets.FromFile || !res.Remote {
		t.Errorf("value %q from %s", gw.Secrets["GATEWAY_API_TOKEN"], origin(t, res, "GATEWAY_API_TOKEN").Source)
	}
	tree, err := render.Render(f.cat, demo, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env, _ := tree.File(render.EnvFile)
	if !strings.Contains(string(env.Data), "from-the-file") || strings.Contains(string(env.Data), "change-me-dev-token") {
		t.Errorf(".env of the remote release:\n%s", env.Data)
	}
	// A catalog resolved for demo is not rendered for dev.
	if _, err := render.Render(f.cat, f.env(t, "dev"), render.Options{}); err == nil {
		t.Error("render dev took the secrets resolved for demo")
	}
}

// The grep test: whatever the source of a value, and whatever goes
// wrong, the value appears in no error, no resolution and no doctor line.
func TestMarkerNeverShown(t *testing.T) {
	const toml = `[environments.dev]
ports = "dev"
secrets_command = ["./secrets.sh"]

[environments.demo]
ports = "dev"
host = "ssh://deploy@demo.example.internal"
dir = "/srv/deployment"
secrets_command = ["./secrets.sh"]

[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = { GREP_ENV = "` + marker + `", GREP_FILE = "` + marker + `", GREP_CMD = "` + marker + `", GREP_DEFAULT = "` + marker + `" }
`
	// compose-go's dotenv parser logs through logrus: nothing it logs may
	// hold a value either.
	var logged bytes.Buffer
	logrus.SetOutput(&logged)
	defer logrus.SetOutput(os.Stderr)
	var texts []string
	check := func(what string) {
		t.Helper()
		texts = append(texts, logged.String())
		logged.Reset()
		for _, s := range texts {
			if strings.Contains(s, marker) || strings.Contains(s, markerWord) {
				t.Errorf("%s: the value in %q", what, s)
			}
		}
		texts = nil
	}
	collect := func(res *secrets.Resolution, err error) {
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
		}
		if res != nil {
			texts = append(texts, res.Lines()...)
			texts = append(texts, fmt.Sprintf("%+v", *res))
		}
	}
	for _, envName := range []string{"dev", "demo"} {
		f := newFixture(t, toml)
		env := f.env(t, envName)
		t.Setenv("GREP_ENV", marker)
		f.file(t, envName, "GREP_FILE="+marker+"\n", 0o600)
		f.script(t, "echo GREP_CMD="+marker+"\n")
		for _, c := range secrets.Doctor(f.cat, env) {
			texts = append(texts, c.String(), fmt.Sprintf("%+v", c))
		}
		collect(secrets.Resolve(context.Background(), f.cat, env))
		check(envName + " resolved")

		// The same with every source failing in turn.
		f.script(t, "echo GREP_CMD="+marker+"\necho 'failed on "+marker+"' >&2\nexit 1\n")
		collect(secrets.Resolve(context.Background(), f.cat, env))
		f.script(t, "echo 'GREP_CMD=\""+marker+"'\n")
		collect(secrets.Resolve(context.Background(), f.cat, env))
		f.script(t, "true\n")
		collect(secrets.Resolve(context.Background(), f.cat, env))
		for _, c := range secrets.Doctor(f.cat, env) {
			texts = append(texts, c.String())
		}
		f.file(t, envName, "GREP_FILE="+marker+"\n", 0o644)
		collect(secrets.Resolve(context.Background(), f.cat, env))
		for _, c := range secrets.Doctor(f.cat, env) {
			texts = append(texts, c.String())
		}
		f.file(t, envName, "GREP_FILE='"+marker+"\n", 0o600)
		collect(secrets.Resolve(context.Background(), f.cat, env))
		f.file(t, envName, "GREP_FILE=ab$"+markerWord+"\nOTHER=${"+markerWord+"}\n", 0o600)
		collect(secrets.Resolve(context.Background(), f.cat, env))
		check(envName + " failing")
	}
}

func TestDoctor(t *testing.T) {
	f := newFixture(t, `[environments.dev]
ports = "dev"

[environments.ci]
ports = "dev"
dir = "ci-deployment"
secrets_command = ["./secrets.sh"]

[environments.demo]
ports = "dev"
host = "ssh://deploy@demo.example.internal"
dir = "/srv/deployment"

[[services]]
name = "web"
image = "busybox:1"
port = 80
dev_port = 9080
secrets = { DOC_ENV = "d", DOC_FILE = "d", DOC_DEFAULT = "d" }

[[services]]
name = "api"
image = "busybox:1"
port = 81
dev_port = 9081
secrets = ["DOC_MISSING"]
`)
	f.script(t, "touch ran\n")
	t.Setenv("DOC_ENV", "v")
	file := f.file(t, "dev", "DOC_FILE=v\n", 0o600)
	lines := func(env string) map[string]secrets.Check {
		out := map[string]secrets.Check{}
		for _, c := range secrets.Doctor(f.cat, f.env(t, env)) {
			out[c.Subject] = c
		}
		return out
	}
	dev := lines("dev")
	for subject, want := range map[string]secrets.Check{
		"secret DOC_ENV":     {Source: secrets.FromEnv, Text: "environment variable DOC_ENV (web)"},
		"secret DOC_FILE":    {Source: secrets.FromFile, Text: "secrets file " + file + " (web)"},
		"secret DOC_DEFAULT": {Source: secrets.FromDefault, DevDefault: true, Text: "dev default in services.toml (not used for remote environments) at " + f.cat.File + ":22: services[0].secrets.DOC_DEFAULT (web)"},
	} {
		want.Subject = subject
		if got := dev[subject]; got != want {
			t.Errorf("dev %s:\n got %+v\nwant %+v", subject, got, want)
		}
	}
	if c := dev["secret DOC_MISSING"]; !c.Problem || !strings.Contains(c.Text, "found nowhere, needed by api: environment variable DOC_MISSING: not set; secrets file") {
		t.Errorf("dev DOC_MISSING: %+v", c)
	}
	ci := lines("ci")
	if c := ci["secret DOC_DEFAULT"]; c.Source != secrets.FromCommand || !c.DevDefault || c.Problem ||
		!strings.Contains(c.Text, "secrets.sh, if it prints it (doctor does not run it); else the dev default in services.toml (not used for remote environments)") {
		t.Errorf("ci DOC_DEFAULT: %+v", c)
	}
	if c := ci["secret DOC_MISSING"]; c.Source != secrets.FromCommand || c.Problem || c.DevDefault {
		t.Errorf("ci DOC_MISSING: %+v", c)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ran")); err == nil {
		t.Error("doctor ran the secrets_command")
	}
	demo := lines("demo")
	if c := demo["secret DOC_DEFAULT"]; !c.Problem || !strings.Contains(c.Text, "the catalog's dev default is not used for remote environments") {
		t.Errorf("demo DOC_DEFAULT: %+v", c)
	}
	if c := demo["secret DOC_ENV"]; c.Problem || c.Source != secrets.FromEnv {
		t.Errorf("demo DOC_ENV: %+v", c)
	}
	f.file(t, "dev", "DOC_FILE=v\n", 0o644)
	bad := lines("dev")
	if c := bad["secrets file"]; !c.Problem || !strings.Contains(c.Text, "chmod 600 "+file) {
		t.Errorf("doctor with a 0644 file: %+v", c)
	}
	if c := bad["secret DOC_MISSING"]; !c.Problem || !strings.Contains(c.Text, "secrets file "+file+": cannot be used (see above)") {
		t.Errorf("doctor with a 0644 file, DOC_MISSING: %+v", c)
	}
	if f.cat.SecretsEnv != "" {
		t.Error("Doctor changed the catalog")
	}
}

// The repository's catalog: dev takes the gateway's dev default, demo has
// no value unless one is given from outside.
func TestRepoCatalog(t *testing.T) {
	cat, err := catalog.Load(filepath.Join("..", "..", "testdata", "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	unsetenv(t, "GATEWAY_API_TOKEN")
	for _, e := range cat.Environments {
		// A developer's own secrets files must not answer.
		e.SecretsFile = filepath.Join(t.TempDir(), e.Name+".env")
	}
	demo, _ := cat.Env("demo")
	_, err = secrets.Resolve(context.Background(), cat, demo)
	var me *secrets.MissingError
	if !errors.As(err, &me) || !reflect.DeepEqual(me.Names(), []string{"GATEWAY_API_TOKEN"}) ||
		!strings.Contains(err.Error(), "services.toml:") || !strings.Contains(err.Error(), "services[4].secrets.GATEWAY_API_TOKEN") {
		t.Fatalf("demo: %v, want GATEWAY_API_TOKEN missing, pointing at the literal", err)
	}
	dev, _ := cat.Env("dev")
	res, err := secrets.Resolve(context.Background(), cat, dev)
	if err != nil {
		t.Fatal(err)
	}
	if o := origin(t, res, "GATEWAY_API_TOKEN"); o.Source != secrets.FromDefault || !reflect.DeepEqual(o.Services, []string{"maestro-gateway"}) {
		t.Errorf("dev: %v", o)
	}
}
