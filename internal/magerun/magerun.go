// Package magerun is what `go run mage.go` runs: mage itself, with a faster
// way to the targets.
//
// mage decides whether its compiled targets are stale by running `go build`
// on them every time, which walks the whole dependency graph (the Docker
// client, compose-go...): about 1.5 s on this project's machines before a
// target starts. MAGEFILE_HASHFAST skips that, but then hashes only the
// magefile and would run a stale binary after a change under tasks/.
//
// magerun keeps its own record instead: the list of files the compiled
// targets were built from (every Go and embedded file of the module's own
// packages the magefile imports, as `go list` names them) and a hash of
// them with go.mod, go.sum, the Go version and the build environment.
// While that hash is unchanged it runs the compiled binary at once; when
// anything in it changed, it has mage compile a new one first. Flags that
// only mage itself understands (-init, -clean, -compile, -d...) go to mage
// as they are.
//
// The package imports nothing but the standard library, and mage is run as
// its own program (`go run github.com/magefile/mage`) with the targets'
// build settings: `go run mage.go` compiles this package with whatever
// settings the user's environment has, so on a fresh machine everything it
// imports is compiled once for it alone; mage's library, compiled with the
// targets' settings, shares the standard library with the targets and the
// sample services' prebuilds.
package magerun

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// exePrefix names the binaries magerun keeps in mage's cache folder.
const exePrefix = "maestro-targets-"

// mageMain is mage's command, run with `go run` from the module's own
// requirements (go.mod pins its version).
const mageMain = "github.com/magefile/mage"

// targetsLdflags are the linker flags of the compiled targets: no symbol
// table or DWARF, which a deployment runner's user never reads and which
// cost a cold first run seconds of linking. Stack traces keep their
// function names and lines.
const targetsLdflags = "-s -w"

// keepBinaries is how many compiled binaries of a module stay in the
// cache: the newest, plus a few that other checkouts may still use.
const keepBinaries = 4

// stamp is what magerun records of the last compile of a module's targets.
type stamp struct {
	// Files are the source files the binary was built from, absolute.
	Files []string `json:"files"`
	// Dirs are the package folders: a file added to one changes the sum.
	Dirs []string `json:"dirs"`
	// EmbedDirs are the folders embedded files are in: a file added to one
	// (which a folder pattern would embed) changes the sum.
	EmbedDirs []string `json:"embed_dirs"`
	// Sum is sourceSum of Files and Dirs at the time of the compile.
	Sum string `json:"sum"`
	// Exe is the compiled binary: exePath of the cache and Sum, or the
	// stamp is not used.
	Exe string `json:"exe"`
}

// exePath is where the binary compiled from sources of sum sum lives.
func exePath(cache, sum string) string { return filepath.Join(cache, exePrefix+sum[:24]) }

// UntrustedError is a cache folder or file that someone other than this
// user could have written: what it names must not run.
type UntrustedError struct {
	Path, Why string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("mage's cache %s %s: the compiled targets there could be anyone's program; "+
		"run `chmod go-w %s` (and own it), or set MAGEFILE_CACHE to a folder of your own", e.Path, e.Why, e.Path)
}

// trusted refuses a path that is a symbolic link (follow says whether one
// is followed instead), is not this user's, or that its group or anyone may
// write.
func trusted(path string, follow bool) error {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	fi, err := stat(path)
	switch {
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return &UntrustedError{Path: path, Why: "is a symbolic link"}
	case fi.Mode().Perm()&0o022 != 0:
		return &UntrustedError{Path: path, Why: fmt.Sprintf("is writable by its group or by anyone (mode %v)", fi.Mode().Perm())}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return &UntrustedError{Path: path, Why: fmt.Sprintf("belongs to user %d, not to you (%d)", st.Uid, os.Geteuid())}
	}
	return nil
}

// cached returns the binary the stamp names when the sources it records
// are unchanged and the binary is where their sum puts it, and everything
// on the way is this user's alone; "" when it must be compiled.
func cached(cache, stampFile, root string) (string, error) {
	st, ok := readStamp(stampFile)
	if !ok {
		return "", nil
	}
	if err := trusted(stampFile, false); err != nil {
		return "", err
	}
	sum, err := sourceSum(root, st.Files, st.Dirs, st.EmbedDirs)
	if err != nil || sum != st.Sum || st.Exe != exePath(cache, sum) {
		return "", nil
	}
	fi, err := os.Lstat(st.Exe)
	if err != nil || !fi.Mode().IsRegular() {
		return "", nil
	}
	if err := trusted(st.Exe, false); err != nil {
		return "", err
	}
	return st.Exe, nil
}

// Main runs mage with args from the module root root (where magefile.go
// and go.mod are) and returns the exit status. Output goes to the given
// writers; a target's own output goes to the process's.
func Main(root string, args []string, stdout, stderr io.Writer) int {
	if !runsTargets(args) {
		return runMage(root, args, stdout, stderr)
	}
	exe, err := Targets(root, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mage: %v\n", err)
		return 1
	}
	// The process becomes the targets' binary: signals, the terminal and
	// the exit status are the binary's own.
	err = syscall.Exec(exe, append([]string{"mage"}, args...), os.Environ())
	fmt.Fprintf(stderr, "mage: run %s: %v\n", exe, err)
	return 1
}

// runsTargets reports whether args name targets to run, with at most the
// flags a compiled mage binary understands itself (-v, -t) before them.
// What follows the first target is the targets' own (-env=demo).
func runsTargets(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-v" || a == "--v" || strings.HasPrefix(a, "-v=") || strings.HasPrefix(a, "-t="):
		case a == "-t" || a == "--t":
			i++ // its value
		case strings.HasPrefix(a, "-"):
			return false
		default:
			return true
		}
	}
	return false
}

// Targets returns the compiled targets binary of the module at root,
// compiling it with mage when the sources it was built from changed.
func Targets(root string, stderr io.Writer) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	cache := cacheDir()
	// Made private when this run makes it; one that exists must be this
	// user's alone: whoever can write there picks what runs.
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return "", err
	}
	if err := trusted(cache, true); err != nil {
		return "", err
	}
	stampFile := filepath.Join(cache, exePrefix+"stamp-"+shortHash(root)+".json")
	if exe, err := cached(cache, stampFile, root); exe != "" || err != nil {
		return exe, err
	}
	// The first run in a checkout on a fresh machine downloads the modules
	// (the network's time) and compiles (the CPU's): the standard library
	// packages the module's own code needs, known without the modules, are
	// compiled while they download. Once they are there, that compile gives
	// way to one of everything at once, which keeps both cores busy to the
	// end and finds done whatever the first one finished.
	var warm *exec.Cmd
	_, err = os.Lstat(stampFile)
	first := errors.Is(err, fs.ErrNotExist)
	if first {
		fmt.Fprintln(stderr, "mage: first run here: downloading modules and compiling the targets")
		downloaded := make(chan error, 1)
		go func() { downloaded <- download(root, stderr) }()
		warm = warmStd(root)
		if err := <-downloaded; err != nil {
			stopWarm(warm)
			return "", err
		}
	}
	pkgs, files, dirs, embedDirs, err := sources(root)
	stopWarm(warm)
	if err != nil {
		return "", err
	}
	sum, err := sourceSum(root, files, dirs, embedDirs)
	if err != nil {
		return "", err
	}
	exe := exePath(cache, sum)
	if err := trusted(exe, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if _, err := os.Stat(exe); err != nil {
		tmp := fmt.Sprintf("%s.tmp-%d", exe, os.Getpid())
		defer os.Remove(tmp)
		if !first {
			// A compile takes a while, silent otherwise: say why.
			fmt.Fprintln(stderr, "mage: compiling the targets (their sources changed)")
		}
		// Everything the targets and mage are built from in one `go build`,
		// so that the two cores are busy throughout; mage's own compile
		// after it finds all but its generated main package done.
		build := goTool(root, append(append([]string{"build"}, pkgs...), mageMain)...)
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			_, _ = stderr.Write(out.Bytes())
			return "", fmt.Errorf("compiling the targets failed (%v)", err)
		}
		out.Reset()
		cmd := goTool(root, "run", mageMain, "-ldflags", targetsLdflags, "-compile", tmp)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			_, _ = stderr.Write(out.Bytes())
			return "", fmt.Errorf("compiling the targets with mage failed (%v)", err)
		}
		if err := os.Rename(tmp, exe); err != nil {
			return "", err
		}
	}
	b, _ := json.Marshal(stamp{Files: files, Dirs: dirs, EmbedDirs: embedDirs, Sum: sum, Exe: exe})
	tmp := fmt.Sprintf("%s.tmp-%d", stampFile, os.Getpid())
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, stampFile)
	}
	prune(cache, exe)
	return exe, nil
}

// goTool returns the go command with args, run from the module root with
// the targets' build settings: static (CGO_ENABLED=0) and -trimpath, as the
// sample services' prebuilds and the helper images are built. mage compiles
// the targets in the environment it was started with, and `go run` builds
// mage itself with them too, so the standard library, most of a cold
// compile, is compiled once for all of them.
func goTool(root string, args ...string) *exec.Cmd {
	cmd := exec.Command(goCmd(), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -trimpath"))
	return cmd
}

// warmStd starts compiling, with the targets' settings, the standard
// library packages the module's own code needs: those `go list` finds
// without downloading anything. Nil when there is nothing to start; a
// failure is left for the real compile to report.
func warmStd(root string) *exec.Cmd {
	list := goTool(root, "list", "-e", "-deps", "-tags", "mage", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", "magefile.go")
	list.Env = append(list.Env, "GOPROXY=off")
	out, _ := list.Output()
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		return nil
	}
	build := goTool(root, append([]string{"build"}, pkgs...)...)
	if build.Start() != nil {
		return nil
	}
	return build
}

// stopWarm interrupts warmStd's compile, if it still runs, and waits for
// it: the go command finishes nothing more, and what it finished is in the
// build cache.
func stopWarm(warm *exec.Cmd) {
	if warm == nil {
		return
	}
	_ = warm.Process.Signal(os.Interrupt)
	_ = warm.Wait()
}

// download fetches every module the build list names, all at once: faster
// than the go command's fetching them as the packages it loads reveal them.
func download(root string, stderr io.Writer) error {
	cmd := goTool(root, "mod", "download")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		_, _ = stderr.Write(out.Bytes())
		return fmt.Errorf("downloading the modules (go mod download) failed (%v)", err)
	}
	return nil
}

// runMage runs mage's own command line with args (-l, -h, -init, -clean...)
// and returns its exit status.
func runMage(root string, args []string, stdout, stderr io.Writer) int {
	cmd := goTool(root, append([]string{"run", mageMain}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(stderr, "mage: run mage: %v\n", err)
		return 1
	}
}

// goCmd is the go command mage uses (MAGEFILE_GOCMD, else go).
func goCmd() string {
	if c := os.Getenv("MAGEFILE_GOCMD"); c != "" {
		return c
	}
	return "go"
}

// cacheDir is mage's cache folder, as mage's mg.CacheDir says: not
// imported, because mg would bring half of the standard library into the
// bootstrap's own compile.
func cacheDir() string {
	if d := os.Getenv("MAGEFILE_CACHE"); d != "" {
		return d
	}
	if runtime.GOOS == "windows" {
		return filepath.Join(os.Getenv("HOMEDRIVE"), os.Getenv("HOMEPATH"), "magefile")
	}
	return filepath.Join(os.Getenv("HOME"), ".magefile")
}

func readStamp(path string) (stamp, bool) {
	var st stamp
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Sum == "" || st.Exe == "" {
		return st, false
	}
	return st, true
}

// goPackage is what sources reads of `go list -json`.
type goPackage struct {
	ImportPath, Dir                                                   string
	Module                                                            *struct{ Main bool }
	GoFiles, CgoFiles, EmbedFiles, IgnoredGoFiles, OtherFiles, SFiles []string
}

// sources lists the packages the magefile needs (standard library,
// dependencies and the module's own) and the files the targets are built
// from: every file `go list` names for the module's own packages, and their
// folders, and the folders of embedded files up to their package's.
// Dependencies outside the module are covered by go.sum.
func sources(root string) (pkgs, files, dirs, embedDirs []string, err error) {
	cmd := exec.Command(goCmd(), "list", "-deps", "-tags", "mage", "-json", "magefile.go")
	cmd.Dir = root
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("go list the magefile's packages in %s: %v: %s", root, err, strings.TrimSpace(errb.String()))
	}
	dec := json.NewDecoder(&out)
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("go list output: %w", err)
		}
		// The magefile's own package has no module in go list's eyes.
		if p.Module != nil || p.Dir != root {
			pkgs = append(pkgs, p.ImportPath)
		}
		if p.Module != nil && !p.Module.Main || p.Module == nil && p.Dir != root {
			continue
		}
		dirs = append(dirs, p.Dir)
		for _, f := range p.EmbedFiles {
			for d := filepath.Dir(filepath.Join(p.Dir, f)); d != p.Dir && strings.HasPrefix(d, p.Dir+string(filepath.Separator)); d = filepath.Dir(d) {
				embedDirs = append(embedDirs, d)
			}
		}
		for _, list := range [][]string{p.GoFiles, p.CgoFiles, p.EmbedFiles, p.IgnoredGoFiles, p.OtherFiles, p.SFiles} {
			for _, f := range list {
				files = append(files, filepath.Join(p.Dir, f))
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum", "magefile.go"} {
		files = append(files, filepath.Join(root, f))
	}
	sort.Strings(files)
	sort.Strings(dirs)
	sort.Strings(embedDirs)
	return pkgs, slices.Compact(files), slices.Compact(dirs), slices.Compact(embedDirs), nil
}

// sourceSum hashes what decides the compiled binary: the Go toolchain and
// build environment, the names of the Go files of each package folder and
// of every entry of each embedded folder, and the content of each file.
func sourceSum(root string, files, dirs, embedDirs []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "magerun-v3\n%s\n%s/%s\n", root, runtime.GOOS, runtime.GOARCH)
	for _, k := range []string{"GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED", "GOTOOLCHAIN", "GOEXPERIMENT", "GOWORK", "MAGEFILE_GOCMD"} {
		fmt.Fprintf(h, "%s=%s\n", k, os.Getenv(k))
	}
	// `go run mage.go` built this program with the toolchain mage will
	// compile the targets with.
	fmt.Fprintf(h, "%s\n", runtime.Version())
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "dir %s\n", d)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".go") {
				fmt.Fprintf(h, "  %s\n", e.Name())
			}
		}
	}
	for _, d := range embedDirs {
		entries, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		fmt.Fprintf(h, "embedded %s\n", d)
		for _, e := range entries {
			fmt.Fprintf(h, "  %s\n", e.Name())
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		fmt.Fprintf(h, "file %s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prune removes compiled binaries beyond the newest keepBinaries, never
// keep itself.
func prune(cache, keep string) {
	matches, _ := filepath.Glob(filepath.Join(cache, exePrefix+"*"))
	type bin struct {
		path string
		mod  int64
	}
	var bins []bin
	for _, m := range matches {
		if i := strings.LastIndex(m, ".tmp-"); i >= 0 {
			// A compile or stamp write in progress, or left by one that
			// was killed: the latter goes.
			if pid, err := strconv.Atoi(m[i+len(".tmp-"):]); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
				_ = os.Remove(m)
			}
			continue
		}
		if strings.Contains(filepath.Base(m), "stamp-") || m == keep {
			continue
		}
		if fi, err := os.Stat(m); err == nil {
			bins = append(bins, bin{m, fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(bins, func(i, j int) bool { return bins[i].mod > bins[j].mod })
	for i, b := range bins {
		if i >= keepBinaries-1 {
			_ = os.Remove(b.path)
		}
	}
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
