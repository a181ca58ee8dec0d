package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

var (
	v1 = &CLI{Argv: []string{"docker-compose"}, Version: "1.29.2"}
	v2 = &CLI{Argv: []string{"docker", "compose"}, Version: "2.40.3", V2: true}
)

func TestArgs(t *testing.T) {
	stack := []string{"/d/docker-compose.yml"}
	tests := []struct {
		name string
		got  []string
		want string
	}{
		{"up stack v1", v1.UpStackArgs("maestro", stack, []string{"db", "cache"}),
			"docker-compose -p maestro -f /d/docker-compose.yml up -d --no-build --no-deps --remove-orphans db cache"},
		{"up stack v2", v2.UpStackArgs("maestro", stack, []string{"api"}),
			"docker compose -p maestro -f /d/docker-compose.yml up -d --no-build --no-deps --remove-orphans api"},
		{"several files", v1.UpStackArgs("p", []string{"a.yml", "b.yml"}, []string{"a"}),
			"docker-compose -p p -f a.yml -f b.yml up -d --no-build --no-deps --remove-orphans a"},
		{"no project, no files", v1.Args("", nil, "version"), "docker-compose version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.got, " "); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// A value with spaces or shell characters stays one argument.
func TestArgsKeepValuesWhole(t *testing.T) {
	got := v1.Args("p", []string{"/a dir/$HOME;rm.yml"}, "up", "-d", "svc;rm")
	want := []string{"docker-compose", "-p", "p", "-f", "/a dir/$HOME;rm.yml", "up", "-d", "svc;rm"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.29.2\n":                    "1.29.2",
		"v2.40.3\n":                   "2.40.3",
		"WARNING: something\n2.1.0\n": "2.1.0",
		"docker: unknown command\n":   "",
		"":                            "",
	} {
		if got := parseVersion(in); got != want {
			t.Errorf("parseVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeCompose writes an executable that prints version and appends a line
// to a counter file each time it runs.
func fakeCompose(t *testing.T, dir, name, version string) (path, counter string) {
	t.Helper()
	path = filepath.Join(dir, name)
	counter = filepath.Join(dir, name+".runs")
	script := fmt.Sprintf("#!/bin/sh\necho run >> %q\necho %s\n", counter, version)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, counter
}

func runs(t *testing.T, counter string) int {
	b, err := os.ReadFile(counter)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func TestDetectHonoursOverride(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	path, counter := fakeCompose(t, dir, "my-compose", "v2.99.1")
	t.Setenv(EnvOverride, path)
	c, err := Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Argv, []string{path}) || c.Version != "2.99.1" || !c.V2 {
		t.Fatalf("Detect = %+v, want the override as v2 2.99.1", c)
	}
	// The standalone binary's version is cached: a second Detect does not run it.
	if _, err := Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := runs(t, counter); n != 1 {
		t.Errorf("fake compose ran %d times, want 1 (version cache)", n)
	}
	// A changed binary is probed again.
	time.Sleep(10 * time.Millisecond)
	fakeCompose(t, dir, "my-compose", "1.29.2")
	c, err = Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.V2 || c.Version != "1.29.2" {
		t.Errorf("after upgrade Detect = %+v, want v1 1.29.2", c)
	}
}

func TestDetectOverrideTwoWords(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	// "docker compose" with a fake docker that knows the compose plugin.
	script := "#!/bin/sh\n[ \"$1 $2 $3\" = \"compose version --short\" ] && { echo 2.40.3; exit 0; }\necho unknown >&2; exit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv(EnvOverride, "docker compose")
	c, err := Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Argv, []string{"docker", "compose"}) || !c.V2 {
		t.Fatalf("Detect = %+v", c)
	}
	// Without the override the plugin is found the same way.
	t.Setenv(EnvOverride, "")
	if c, err = Detect(context.Background()); err != nil || c.String() != "docker compose" {
		t.Fatalf("Detect = %+v, %v", c, err)
	}
}

func TestDetectOverrideBroken(t *testing.T) {
	t.Setenv(EnvOverride, "/nonexistent/compose")
	_, err := Detect(context.Background())
	if err == nil || !strings.Contains(err.Error(), EnvOverride) || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("err = %v, want it to name %s and say the command is missing", err, EnvOverride)
	}
}

func TestDetectNothingInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvOverride, "")
	_, err := Detect(context.Background())
	if err == nil {
		t.Fatal("Detect found a compose in an empty PATH")
	}
	for _, want := range []string{"no Docker Compose found", "docker-compose-plugin", "docker-compose", EnvOverride} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The real compose on this machine validates a tiny compose file, and
// rejects a broken one with an error carrying the command and its output.
func TestRunConfigReal(t *testing.T) {
	c, err := Detect(context.Background())
	if err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(good, []byte("services:\n  web:\n    image: example/web:latest\n    environment:\n      - GREETING=${GREETING}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := Exec(ctx, dir, []string{"GREETING=hello"}, c.Args(testenv.ProjectName(t, "cfg"), []string{good}, "config", "-q"))
	if err != nil {
		t.Fatalf("config -q on a valid file: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("config -q printed %q, want nothing", s)
	}

	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("services:\n  web:\n    image: x\n    ports: 12\n    bogus_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := c.Args("cfgbad", []string{bad}, "config", "-q")
	_, err = Exec(ctx, dir, nil, argv)
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("config -q on an invalid file: err = %v, want a *RunError", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("err = %v, want it to wrap a non-zero exit", err)
	}
	if !strings.Contains(err.Error(), strings.Join(argv, " ")) {
		t.Errorf("error does not name the command: %v", err)
	}
	if !strings.Contains(re.Tail, "bogus_key") && !strings.Contains(re.Tail, "ports") {
		t.Errorf("error tail does not carry compose's complaint: %q", re.Tail)
	}
}

func TestRunKeepsTail(t *testing.T) {
	// 50 numbered lines then failure: only the last TailLines are kept.
	_, err := Exec(context.Background(), "", []string{"SECRET_VALUE=hunter2"},
		[]string{"sh", "-c", `i=1; while [ $i -le 50 ]; do echo line$i; i=$((i+1)); done; exit 3`})
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *RunError", err)
	}
	lines := strings.Split(re.Tail, "\n")
	if len(lines) != TailLines || lines[0] != "line31" || lines[len(lines)-1] != "line50" {
		t.Errorf("tail = %q, want line31..line50", re.Tail)
	}
	if strings.Contains(err.Error(), "line30\n") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error carries too much: %v", err)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error does not say how it failed: %v", err)
	}
}

func TestRunEnvAndCancel(t *testing.T) {
	out, err := Exec(context.Background(), t.TempDir(), []string{"HOME=/overridden"}, []string{"sh", "-c", `echo "$HOME"; pwd`})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "/overridden\n") {
		t.Errorf("env not applied over os.Environ: %q", out)
	}
	// The context's end kills the command: the process is gone when Exec
	// returns, long before it would have ended by itself.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err = Exec(ctx, "", nil, []string{"sh", "-c", `echo $$ > "$0" && exec sleep 600`, pidFile})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the command never started: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("process %q still runs after Exec returned", b)
	}
}

func ExampleCLI_UpStackArgs() {
	c := &CLI{Argv: []string{"docker-compose"}, Version: "1.29.2"}
	fmt.Println(strings.Join(c.UpStackArgs("maestro", []string{"docker-compose.yml"}, []string{"state-store"}), " "))
	// Output:
	// docker-compose -p maestro -f docker-compose.yml up -d --no-build --no-deps --remove-orphans state-store
}

func TestStartArgs(t *testing.T) {
	c := &CLI{Argv: []string{"docker-compose"}}
	got := c.StartArgs("p", []string{"docker-compose.yml"}, []string{"a", "b"}, map[string]int{"b": 2}, false)
	want := []string{"docker-compose", "-p", "p", "-f", "docker-compose.yml", "up", "-d", "--no-build", "--no-deps", "--no-recreate", "--scale", "b=2", "a", "b"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = c.StartArgs("p", []string{"f.yml"}, []string{"db"}, nil, true)
	if !slices.Contains(got, "--force-recreate") || slices.Contains(got, "--no-recreate") {
		t.Errorf("recreate: %q", got)
	}
}

// Output reaches the stream while the command runs: the stand-in prints
// to stdout and stderr, then waits on a FIFO that the test opens only
// once both lines arrived.
func TestExecStreamWhileRunning(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	var stream uitest.Buffer
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = ExecStream(context.Background(), dir, []string{"GATE=" + gate},
			[]string{"sh", "-c", `echo "Creating web ... "; echo "a warning" >&2; read x < "$GATE"; echo "Creating web ... done"`}, &stream)
	}()
	stream.WaitFor(t, "Creating web ... \na warning\n", done)
	select {
	case <-done:
		t.Fatal("the command ended before the test let it")
	default:
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	want := "Creating web ... \na warning\nCreating web ... done\n"
	if string(out) != want || stream.String() != want {
		t.Errorf("returned %q, streamed %q, want %q", out, stream.String(), want)
	}
}
