package magerun

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/internal/gobuild"
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
		// A folder pattern: every file in data/ is embedded.
		"greet/greet.go": "package greet\n\nimport (\n\t\"embed\"\n\t\"fmt\"\n\t\"io/fs\"\n\t\"strings\"\n)\n\n//go:embed data\nvar data embed.FS\n\nvar word string\n\n" +
			"// Print prints the greeting.\nfunc Print() {\n\tif word == \"\" {\n\t\tes, _ := fs.ReadDir(data, \"data\")\n\t\tvar ws []string\n" +
			"\t\tfor _, e := range es {\n\t\t\tb, _ := data.ReadFile(\"data/\" + e.Name())\n\t\t\tws = append(ws, strings.TrimSpace(string(b)))\n\t\t}\n" +
			"\t\tword = strings.Join(ws, \" \")\n\t}\n\tfmt.Println(\"" + greeting + "\", word)\n}\n",
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
// an embedded file, a new file in an embedded folder, or a new file in a
// package folder.
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
	// Built with the prebuilds' settings (static, -trimpath), so that a
	// fresh machine compiles the standard library once for both.
	info, err := buildinfo.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("the targets were built with %v, want CGO_ENABLED=0 and -trimpath", settings)
	}
	// -trimpath leaves -ldflags out of the build information: the binary
	// tells whether it was linked with gobuild.Ldflags (no symbol table).
	if f, err := elf.Open(first); err != nil {
		t.Fatal(err)
	} else if f.Section(".symtab") != nil || f.Section(".debug_info") != nil {
		f.Close()
		t.Errorf("the targets binary has a symbol table or DWARF: not linked with -ldflags=%q", gobuild.Ldflags)
	} else {
		f.Close()
	}
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
	// A new file in an embedded folder is embedded.
	if err := os.WriteFile(filepath.Join(dir, "greet", "data", "zz.txt"), []byte("again"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("hi there again")
	// A new file in a package folder may change what is compiled.
	if err := os.WriteFile(filepath.Join(dir, "greet", "more.go"), []byte("package greet\n\nfunc init() { word = \"new\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("hi new")
}

// A stamp naming another program never gets it run: not from a cache
// folder or stamp others can write (refused, naming the fix), and not from
// a private one when the binary is not where the sources' sum puts it.
func TestPoisonedStamp(t *testing.T) {
	testenv.RequireCommand(t, "go")
	dir := t.TempDir()
	cache := filepath.Join(dir, ".magecache")
	t.Setenv("MAGEFILE_CACHE", cache)
	t.Setenv("GOFLAGS", "-mod=mod")
	writeModule(t, dir, "hello", "world")
	_, files, dirs, embedDirs, err := sources(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := sourceSum(dir, files, dirs, embedDirs)
	if err != nil {
		t.Fatal(err)
	}
	// What an attacker would plant: a program of theirs, and a stamp whose
	// sum is right (every input of it is readable) naming it.
	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\ntouch "+filepath.Join(dir, "pwned")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	stampFile := filepath.Join(cache, exePrefix+"stamp-"+shortHash(dir))
	plant := func(exe string, mode os.FileMode) {
		t.Helper()
		b := stamp{Files: files, Dirs: dirs, EmbedDirs: embedDirs, Sum: sum, Exe: exe}.encode()
		if err := os.WriteFile(stampFile, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(stampFile, mode); err != nil {
			t.Fatal(err)
		}
	}

	// A group-writable cache (a shared MAGEFILE_CACHE): refused outright.
	plant(evil, 0o600)
	if err := os.Chmod(cache, 0o770); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	exe, err := Targets(dir, &stderr)
	var ue *UntrustedError
	if !errors.As(err, &ue) || ue.Path != cache || exe != "" || !strings.Contains(err.Error(), "chmod go-w "+cache) {
		t.Fatalf("a group-writable cache: Targets = %q, %v; want an *UntrustedError naming %s", exe, err, cache)
	}
	if err := os.Chmod(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	// A private cache, a stamp others may write: refused.
	plant(evil, 0o666)
	if exe, err := cached(cache, stampFile, dir); !errors.As(err, &ue) || ue.Path != stampFile || exe != "" {
		t.Fatalf("a world-writable stamp: cached = %q, %v; want an *UntrustedError naming it", exe, err)
	}
	// A private stamp naming a binary elsewhere than the sum's: not used.
	plant(evil, 0o600)
	if exe, err := cached(cache, stampFile, dir); exe != "" || err != nil {
		t.Fatalf("a stamp naming %s: cached = %q, %v; want it ignored", evil, exe, err)
	}
	// The binary at the sum's path, but group-writable: refused.
	if err := os.WriteFile(exePath(cache, sum), []byte("#!/bin/sh\n"), 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exePath(cache, sum), 0o775); err != nil {
		t.Fatal(err)
	}
	plant(exePath(cache, sum), 0o600)
	if exe, err := cached(cache, stampFile, dir); !errors.As(err, &ue) || ue.Path != exePath(cache, sum) || exe != "" {
		t.Fatalf("a group-writable binary: cached = %q, %v; want an *UntrustedError naming it", exe, err)
	}
	// Control: the same binary, private, is what the stamp gives.
	if err := os.Chmod(exePath(cache, sum), 0o755); err != nil {
		t.Fatal(err)
	}
	if exe, err := cached(cache, stampFile, dir); exe != exePath(cache, sum) || err != nil {
		t.Fatalf("a private stamp and binary: cached = %q, %v; want %s", exe, err, exePath(cache, sum))
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("the planted program ran")
	}
}

// `go run mage.go` compiles the bootstrap with the user's own settings,
// which nothing else shares, before anything else can start: it stays
// small, the standard library only, and not its heavier packages.
func TestBootstrapStaysSmall(t *testing.T) {
	testenv.RequireCommand(t, "go")
	cmd := exec.Command("go", "list", "-deps", "mage.go")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list mage.go: %v\n%s", err, out)
	}
	std := exec.Command("go", "list", "std")
	stdOut, err := std.Output()
	if err != nil {
		t.Fatal(err)
	}
	isStd := map[string]bool{}
	for _, p := range strings.Fields(string(stdOut)) {
		isStd[p] = true
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "command-line-arguments" || p == "github.com/maestro-platform/deploy/internal/magerun" || p == "github.com/maestro-platform/deploy/internal/gobuild":
		case p == "reflect" || p == "fmt" || p == "encoding/json":
			t.Errorf("mage.go needs %s: seconds more of every first run, compiled for the bootstrap alone", p)
		case !isStd[p] && !strings.HasPrefix(p, "vendor/"):
			t.Errorf("mage.go needs %s: the bootstrap keeps to the standard library", p)
		}
	}
}

// A stamp reads back as written, whatever its paths hold; anything else
// is no stamp.
func TestStampRoundTrip(t *testing.T) {
	st := stamp{Sum: "abc", Exe: "/c/x y", Files: []string{"/a b/\"q\".go", "/n\nl.go"}, Dirs: []string{"/d"}, EmbedDirs: []string{"/é"}}
	got, ok := decodeStamp(st.encode())
	if !ok || !slices.Equal(got.Files, st.Files) || !slices.Equal(got.Dirs, st.Dirs) || !slices.Equal(got.EmbedDirs, st.EmbedDirs) || got.Sum != st.Sum || got.Exe != st.Exe {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", st, got, ok)
	}
	for _, b := range []string{"", `{"sum":"abc","exe":"/x"}`, stampHeader + "sum abc\n", stampHeader + "exe \"/x\"\n", stampHeader + "sum \"a\"\nexe \"/x\"\nrun \"/y\"\n"} {
		if _, ok := decodeStamp([]byte(b)); ok {
			t.Errorf("decodeStamp(%q) took it for a stamp", b)
		}
	}
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
// removes it, and leaves the one of a compile still running. It removes
// stamps of the old format, never a current one.
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
	oldStamp := filepath.Join(cache, exePrefix+"stamp-abc.json")
	stampNow := filepath.Join(cache, exePrefix+"stamp-abc")
	for _, f := range []string{oldStamp, stampNow} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	prune(cache, filepath.Join(cache, exePrefix+"current"))
	if _, err := os.Stat(oldStamp); !os.IsNotExist(err) {
		t.Errorf("a stamp of the old JSON format is still there: %v", err)
	}
	if _, err := os.Stat(stampNow); err != nil {
		t.Errorf("the current stamp was removed: %v", err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the temporary of a dead compile is still there: %v", err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("the temporary of a running compile was removed: %v", err)
	}
}
