package magerun

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// A module like this one: a magefile whose target calls a package of the
// module, which embeds a file.
func writeModule(t *testing.T, dir, greeting, embedded string) {
	t.Helper()
	sum, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	var mageSum []string
	for _, l := range strings.Split(string(sum), "\n") {
		if strings.HasPrefix(l, "github.com/magefile/mage ") {
			mageSum = append(mageSum, l)
		}
	}
	files := map[string]string{
		"go.mod": "module example.test/m\n\ngo 1.26\n\nrequire github.com/magefile/mage v1.17.2\n",
		"go.sum": strings.Join(mageSum, "\n") + "\n",
		"magefile.go": "//go:build mage\n\npackage main\n\nimport \"example.test/m/greet\"\n\n" +
			"// Hello says hello.\nfunc Hello() { greet.Print() }\n",
		"greet/greet.go": "package greet\n\nimport (\n\t_ \"embed\"\n\t\"fmt\"\n)\n\n//go:embed data/word.txt\nvar word string\n\n" +
			"// Print prints the greeting.\nfunc Print() { fmt.Println(\"" + greeting + "\", word) }\n",
		"greet/data/word.txt": embedded,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The compiled targets are reused while nothing they were built from
// changed, and never after a change in a package the magefile imports, in
// an embedded file, or a new file in a package folder.
func TestTargetsNeverStale(t *testing.T) {
	testenv.RequireCommand(t, "go")
	dir := t.TempDir()
	t.Setenv("MAGEFILE_CACHE", filepath.Join(dir, ".magecache"))
	t.Setenv("GOFLAGS", "-mod=mod")
	writeModule(t, dir, "hello", "world")
	run := func(want string) string {
		t.Helper()
		var stderr bytes.Buffer
		exe, err := Targets(dir, &stderr)
		if err != nil {
			t.Fatalf("Targets: %v\n%s", err, stderr.String())
		}
		cmd := exec.Command(exe, "hello")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Fatalf("the targets printed %q (%v), want %q", out, err, want)
		}
		return exe
	}
	first := run("hello world")
	if again := run("hello world"); again != first {
		t.Errorf("unchanged sources gave another binary: %s, then %s", first, again)
	}
	writeModule(t, dir, "hi", "world")
	second := run("hi world")
	writeModule(t, dir, "hi", "there")
	third := run("hi there")
	if second == first || third == second {
		t.Errorf("binaries %s, %s, %s: a change did not make a new one", first, second, third)
	}
	// A new file in a package folder may change what is compiled.
	if err := os.WriteFile(filepath.Join(dir, "greet", "more.go"), []byte("package greet\n\nfunc init() { word = \"new\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("hi new")
}

func TestRunsTargets(t *testing.T) {
	for args, want := range map[string]bool{
		"deployAll":             true,
		"-v deployAll":          true,
		"-t 5m promote -env=x":  true,
		"-l":                    false,
		"-h promote":            false,
		"-compile out":          false,
		"-d other deployAll":    false,
		"":                      false,
		"-clean":                false,
		"-t=10s render":         true,
		"-debug render":         false,
		"-init":                 false,
		"render -- -not-a-flag": true,
	} {
		if got := runsTargets(strings.Fields(args)); got != want {
			t.Errorf("runsTargets(%q) = %v, want %v", args, got, want)
		}
	}
}

// A compile killed halfway leaves its temporary binary; the next prune
// removes it, and leaves the one of a compile still running.
func TestPruneRemovesDeadTemporaries(t *testing.T) {
	cache := t.TempDir()
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(cache, exePrefix+"abc.tmp-"+strconv.Itoa(done.Process.Pid))
	alive := filepath.Join(cache, exePrefix+"def.tmp-"+strconv.Itoa(os.Getpid()))
	for _, f := range []string{dead, alive} {
		if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prune(cache, filepath.Join(cache, exePrefix+"current"))
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the temporary of a dead compile is still there: %v", err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("the temporary of a running compile was removed: %v", err)
	}
}
