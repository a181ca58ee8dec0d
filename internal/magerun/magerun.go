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
// `go run mage.go` compiles this package with whatever settings the user's
// environment has, so on a fresh machine everything it imports is compiled
// for it alone, before anything else can start. It imports the least of the
// standard library it can (not fmt, encoding/json or reflect: seconds of a
// first run), and runs mage as a program of its own, built with the
// targets' settings in the one compile of everything the targets need, so
// that mage's library shares the standard library with the targets and the
// sample services' prebuilds.
package magerun

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
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

	"github.com/maestro-platform/deploy/internal/gobuild"
)

// exePrefix names the binaries magerun keeps in mage's cache folder.
const exePrefix = "maestro-targets-"

// keepBinaries is how many compiled binaries of a module stay in the
// cache: the newest, plus a few that other checkouts may still use.
const keepBinaries = 4

// mageMain is mage's command, built from the module's own requirements
// (go.mod pins its version).
const mageMain = "github.com/magefile/mage"

// compileGOGC is the compilers' garbage collection setting while the
// targets compile: about a tenth less CPU than the default for a few
// hundred MB more at the peak. It is no build setting: the build cache
// shares the results with compiles of the default.
const compileGOGC = "400"

// stamp is what magerun records of the last compile of a module's targets.
type stamp struct {
	// Files are the source files the binary was built from, absolute.
	Files []string
	// Dirs are the package folders: a file added to one changes the sum.
	Dirs []string
	// EmbedDirs are the folders embedded files are in: a file added to one
	// (which a folder pattern would embed) changes the sum.
	EmbedDirs []string
	// Sum is sourceSum of Files and Dirs at the time of the compile.
	Sum string
	// Exe is the compiled binary: exePath of the cache and Sum, or the
	// stamp is not used.
	Exe string
}

// stampHeader begins a stamp file; a file without it is not a stamp.
const stampHeader = "magerun stamp v1\n"

// encode writes the stamp as lines of a key and a quoted value.
func (st stamp) encode() []byte {
	var b bytes.Buffer
	b.WriteString(stampHeader)
	b.WriteString("sum " + strconv.Quote(st.Sum) + "\n")
	b.WriteString("exe " + strconv.Quote(st.Exe) + "\n")
	for _, l := range []struct {
		key  string
		list []string
	}{{"file", st.Files}, {"dir", st.Dirs}, {"embed", st.EmbedDirs}} {
		for _, v := range l.list {
			b.WriteString(l.key + " " + strconv.Quote(v) + "\n")
		}
	}
	return b.Bytes()
}

// decodeStamp reads what encode wrote; false for anything else.
func decodeStamp(b []byte) (stamp, bool) {
	var st stamp
	rest, ok := bytes.CutPrefix(b, []byte(stampHeader))
	if !ok {
		return st, false
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n") {
		key, quoted, _ := strings.Cut(line, " ")
		v, err := strconv.Unquote(quoted)
		if err != nil {
			return st, false
		}
		switch key {
		case "sum":
			st.Sum = v
		case "exe":
			st.Exe = v
		case "file":
			st.Files = append(st.Files, v)
		case "dir":
			st.Dirs = append(st.Dirs, v)
		case "embed":
			st.EmbedDirs = append(st.EmbedDirs, v)
		default:
			return st, false
		}
	}
	return st, st.Sum != "" && st.Exe != ""
}

// exePath is where the binary compiled from sources of sum sum lives.
func exePath(cache, sum string) string { return filepath.Join(cache, exePrefix+sum[:24]) }

// UntrustedError is a cache folder or file that someone other than this
// user could have written: what it names must not run.
type UntrustedError struct {
	Path, Why string
}

func (e *UntrustedError) Error() string {
	return "mage's cache " + e.Path + " " + e.Why + ": the compiled targets there could be anyone's program; " +
		"run `chmod go-w " + e.Path + "` (and own it), or set MAGEFILE_CACHE to a folder of your own"
}

// wrapped is an error with what was being done when it happened.
type wrapped struct {
	doing string
	err   error
}

func (e *wrapped) Error() string { return e.doing + ": " + e.err.Error() }
func (e *wrapped) Unwrap() error { return e.err }

func wrap(doing string, err error) error { return &wrapped{doing, err} }

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
		return &UntrustedError{Path: path, Why: "is writable by its group or by anyone (mode " + fi.Mode().Perm().String() + ")"}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return &UntrustedError{Path: path, Why: "belongs to user " + strconv.Itoa(int(st.Uid)) + ", not to you (" + strconv.Itoa(os.Geteuid()) + ")"}
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
		io.WriteString(stderr, "mage: "+err.Error()+"\n")
		return 1
	}
	// The process becomes the targets' binary: signals, the terminal and
	// the exit status are the binary's own.
	err = syscall.Exec(exe, append([]string{"mage"}, args...), os.Environ())
	io.WriteString(stderr, "mage: run "+exe+": "+err.Error()+"\n")
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
	stampFile := filepath.Join(cache, exePrefix+"stamp-"+shortHash(root))
	if exe, err := cached(cache, stampFile, root); exe != "" || err != nil {
		return exe, err
	}
	_, err = os.Lstat(stampFile)
	first := errors.Is(err, fs.ErrNotExist)
	if first {
		io.WriteString(stderr, "mage: first run here: downloading modules and compiling the targets\n")
		// All at once: faster than the go command's fetching each module
		// as the packages it loads reveal it.
		if err := run(goTool(root, "mod", "download"), stderr); err != nil {
			return "", wrap("downloading the modules (go mod download)", err)
		}
	}
	pkgs, files, dirs, embedDirs, err := sources(root)
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
		if !first {
			// A compile takes a while, silent otherwise: say why.
			io.WriteString(stderr, "mage: compiling the targets (their sources changed)\n")
		}
		if err := compile(root, pkgs, exe, stderr); err != nil {
			return "", err
		}
	}
	tmp := stampFile + ".tmp-" + strconv.Itoa(os.Getpid())
	if os.WriteFile(tmp, stamp{Files: files, Dirs: dirs, EmbedDirs: embedDirs, Sum: sum, Exe: exe}.encode(), 0o600) == nil {
		_ = os.Rename(tmp, stampFile)
	}
	prune(cache, exe)
	return exe, nil
}

// compile has mage compile the targets to exe. Everything they and mage are
// built from is compiled first in one `go build`, which keeps both cores
// busy to the end (mage's own compile after it finds all but its generated
// main package done) and links mage's binary beside the rest.
func compile(root string, pkgs []string, exe string, stderr io.Writer) error {
	bin, err := os.MkdirTemp("", "maestro-mage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	build := goTool(root, append(append([]string{"build", "-o", bin + string(filepath.Separator)}, pkgs...), mageMain)...)
	if err := run(build, stderr); err != nil {
		return wrap("compiling the targets", err)
	}
	tmp := exe + ".tmp-" + strconv.Itoa(os.Getpid())
	defer os.Remove(tmp)
	cmd := withSettings(exec.Command(filepath.Join(bin, "mage"), "-ldflags", gobuild.Ldflags, "-compile", tmp), root)
	if err := run(cmd, stderr); err != nil {
		return wrap("compiling the targets with mage", err)
	}
	return os.Rename(tmp, exe)
}

// run runs cmd, showing what it printed only when it failed.
func run(cmd *exec.Cmd, stderr io.Writer) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		_, _ = stderr.Write(out.Bytes())
	}
	return err
}

// goTool returns the go command with args, run from the module root with
// the build settings of every Go program the tool compiles (gobuild); mage,
// started with the same environment, compiles the targets with them too.
func goTool(root string, args ...string) *exec.Cmd {
	return withSettings(exec.Command(goCmd(), args...), root)
}

// withSettings runs cmd from root with the build settings of goTool.
func withSettings(cmd *exec.Cmd, root string) *exec.Cmd {
	cmd.Dir = root
	cmd.Env = append(os.Environ(), gobuild.Static, "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" "+gobuild.Trimpath), "GOGC="+compileGOGC)
	return cmd
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
		io.WriteString(stderr, "mage: run mage: "+err.Error()+"\n")
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
// imported, because mg would bring fmt and reflect into the bootstrap.
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
	b, err := os.ReadFile(path)
	if err != nil {
		return stamp{}, false
	}
	return decodeStamp(b)
}

// listFormat has `go list` print, per package, a line "P" with its import
// path, folder and whether it is of the main module ("none": of no module),
// then a line per file: "F" a file it is built from, "E" an embedded file.
// Every value is quoted.
const listFormat = `P {{printf "%q %q" .ImportPath .Dir}} {{if .Module}}{{.Module.Main}}{{else}}none{{end}}
{{range .GoFiles}}F {{printf "%q" .}}
{{end}}{{range .CgoFiles}}F {{printf "%q" .}}
{{end}}{{range .IgnoredGoFiles}}F {{printf "%q" .}}
{{end}}{{range .CFiles}}F {{printf "%q" .}}
{{end}}{{range .HFiles}}F {{printf "%q" .}}
{{end}}{{range .SysoFiles}}F {{printf "%q" .}}
{{end}}{{range .SFiles}}F {{printf "%q" .}}
{{end}}{{range .EmbedFiles}}E {{printf "%q" .}}
{{end}}`

// sources lists the packages the magefile needs (standard library,
// dependencies and the module's own) and the files the targets are built
// from: every file `go list` names for the module's own packages, and their
// folders, and the folders of embedded files up to their package's.
// Dependencies outside the module are covered by go.sum.
func sources(root string) (pkgs, files, dirs, embedDirs []string, err error) {
	cmd := exec.Command(goCmd(), "list", "-deps", "-tags", "mage", "-f", listFormat, "magefile.go")
	cmd.Dir = root
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, nil, nil, wrap("go list the magefile's packages in "+root, errors.New(err.Error()+": "+strings.TrimSpace(errb.String())))
	}
	bad := func(line string) error { return errors.New("go list printed " + strconv.Quote(line)) }
	var dir string
	own := false
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "P":
			path, rest, err := unquoteNext(rest)
			if err != nil {
				return nil, nil, nil, nil, bad(line)
			}
			if dir, rest, err = unquoteNext(rest); err != nil {
				return nil, nil, nil, nil, bad(line)
			}
			// The magefile's own package has no module in go list's eyes.
			own = rest == "true" || rest == "none" && dir == root
			if rest != "none" || dir != root {
				pkgs = append(pkgs, path)
			}
			if own {
				dirs = append(dirs, dir)
			}
		case "F", "E":
			f, err := strconv.Unquote(rest)
			if err != nil {
				return nil, nil, nil, nil, bad(line)
			}
			if !own {
				continue
			}
			files = append(files, filepath.Join(dir, f))
			if kind == "E" {
				for d := filepath.Dir(filepath.Join(dir, f)); d != dir && strings.HasPrefix(d, dir+string(filepath.Separator)); d = filepath.Dir(d) {
					embedDirs = append(embedDirs, d)
				}
			}
		default:
			return nil, nil, nil, nil, bad(line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, nil, wrap("go list output", err)
	}
	for _, f := range []string{"go.mod", "go.sum", "magefile.go"} {
		files = append(files, filepath.Join(root, f))
	}
	sort.Strings(files)
	sort.Strings(dirs)
	sort.Strings(embedDirs)
	return pkgs, slices.Compact(files), slices.Compact(dirs), slices.Compact(embedDirs), nil
}

// unquoteNext reads the quoted string s begins with and returns it and
// what follows it, without the space between.
func unquoteNext(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, strings.TrimPrefix(s[len(q):], " "), err
}

// sourceSum hashes what decides the compiled binary: the Go toolchain and
// build environment, the names of the Go files of each package folder and
// of every entry of each embedded folder, and the content of each file.
func sourceSum(root string, files, dirs, embedDirs []string) (string, error) {
	h := sha256.New()
	line := func(parts ...string) { io.WriteString(h, strings.Join(parts, " ")+"\n") }
	line("magerun-v4", root, runtime.GOOS+"/"+runtime.GOARCH)
	for _, k := range []string{"GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED", "GOTOOLCHAIN", "GOEXPERIMENT", "GOWORK", "MAGEFILE_GOCMD"} {
		line(k + "=" + os.Getenv(k))
	}
	// `go run mage.go` built this program with the toolchain mage will
	// compile the targets with.
	line(runtime.Version())
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return "", err
		}
		line("dir", d)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".go") {
				line(" ", e.Name())
			}
		}
	}
	for _, d := range embedDirs {
		entries, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		line("embedded", d)
		for _, e := range entries {
			line(" ", e.Name())
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		line("file", f, strconv.Itoa(len(b)))
		h.Write(b)
	}
	return hexString(h.Sum(nil)), nil
}

// hexString is b in lower-case hex (encoding/hex would bring fmt).
func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// prune removes compiled binaries beyond the newest keepBinaries, never
// keep itself, and stamps of the format before this one.
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
		if strings.Contains(filepath.Base(m), "stamp-") {
			// Stamps of the JSON format before stampHeader are never read.
			if strings.HasSuffix(m, ".json") {
				_ = os.Remove(m)
			}
			continue
		}
		if m == keep {
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
	return hexString(sum[:6])
}
