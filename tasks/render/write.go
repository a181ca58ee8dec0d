package render

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
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// Manifest is the .manifest of a rendered folder: what render wrote, so
// that a later Write can tell a hand edit from its own output. It holds no
// time: renders are deterministic.
type Manifest struct {
	Generator   string          `json:"generator"`
	Project     string          `json:"project"`
	Environment string          `json:"environment"`
	Release     string          `json:"release,omitempty"`
	Files       []ManifestEntry `json:"files"`
}

// ManifestEntry is one managed file.
type ManifestEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Mode   string `json:"mode"` // octal, e.g. "0600"
}

const generator = "maestro-deploy render"

func newManifest(project, env, release string, tree Tree) ([]byte, error) {
	m := Manifest{Generator: generator, Project: project, Environment: env, Release: release}
	for _, f := range tree {
		if f.Path == ManifestFile {
			continue
		}
		sum := sha256.Sum256(f.Data)
		m.Files = append(m.Files, ManifestEntry{Path: f.Path, SHA256: hex.EncodeToString(sum[:]),
			Mode: fmt.Sprintf("%04o", f.Mode.Perm())})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadManifest reads the .manifest of a rendered folder; it returns
// fs.ErrNotExist (wrapped) when the folder holds none.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	for _, e := range m.Files {
		if checkPath(e.Path) != nil {
			return nil, fmt.Errorf("%s: bad path %q", filepath.Join(dir, ManifestFile), e.Path)
		}
	}
	return &m, nil
}

// WriteOptions change how Write treats the folder.
type WriteOptions struct {
	// Overwrite replaces hand-edited files, keeping a copy of each under
	// .backup/<UTC timestamp>/, instead of refusing.
	Overwrite bool
	// BeforeSwap, when set, runs once the new folder is complete, just
	// before it replaces the old one; an error stops Write there, with the
	// old folder as it was.
	BeforeSwap func() error
}

// WriteResult says what Write did; paths are slash-separated and relative.
type WriteResult struct {
	Written   []string // new or changed files
	Unchanged []string // files already as rendered
	Removed   []string // files of the previous render that are no longer rendered
	BackedUp  []Backup // hand-edited files replaced, and their copies (Overwrite)
}

// Changed reports whether Write changed the folder.
func (r *WriteResult) Changed() bool { return len(r.Written)+len(r.Removed) > 0 }

// DriftError is returned by Write when files render manages were edited by
// hand since the last render (or an unmanaged file is in the way of one);
// nothing was changed.
type DriftError struct {
	Dir   string
	Files []string
}

func (e *DriftError) Error() string {
	return fmt.Sprintf("%s: edited by hand since the last render: %s; render changed nothing. "+
		"Move your changes into services.toml, or replace the files (a copy of each is kept in %s/): "+
		"mage render with overwrite (DEPLOY_OVERWRITE=1 mage render)",
		e.Dir, strings.Join(e.Files, ", "), BackupDir)
}

// ExitStatus is exitcode.Usage: the hand edits are to move or replace.
func (e *DriftError) ExitStatus() int { return exitcode.Usage }

// testHookBeforeSwap, when set, runs after the new folder is complete and
// before it replaces the old one: tests fail a write there.
var testHookBeforeSwap func() error

// testHookWriteFile, when set, runs before each rendered file is written
// into the new folder: tests fail a write halfway.
var testHookWriteFile func(path string) error

// Write puts tree into dir, creating it if needed. The whole folder changes
// at once: the new one is built beside it and swapped in, so a failure at
// any point leaves the previous folder as it was. Files render does not
// manage (a README, reports/, .state/) are carried over untouched. A
// managed file edited by hand stops Write with a *DriftError unless
// opts.Overwrite. When nothing differs, Write touches nothing.
//
// A compose file whose check Render deferred (Options.DeferValidation) is
// checked here when it or its .env is to be written; one already on disk
// as rendered, and recorded so in the manifest, was checked when it was
// written. A failed check changes nothing.
func Write(dir string, tree Tree, opts WriteOptions) (*WriteResult, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	dir = abs
	// A deployment folder that is a symbolic link is written where the
	// link points: the swap replaces that folder, and the link, with
	// reports/, .state/ and the user's notes beside it, stays as it is.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	if err := checkTree(tree); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	parent, base := filepath.Split(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	unlock, err := lock(filepath.Join(parent, "."+base+".lock"))
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	defer unlock()
	if err := recoverLeftovers(parent, base); err != nil {
		return nil, fmt.Errorf("write %s: recover an interrupted write: %w", dir, err)
	}

	st, err := inspect(dir, tree, opts.Overwrite)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	if len(st.drift) > 0 && !opts.Overwrite {
		return nil, &DriftError{Dir: dir, Files: st.drift}
	}
	if err := validateChanged(tree, st); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	res := &WriteResult{Written: st.written, Unchanged: st.unchanged, Removed: st.removed}
	if !res.Changed() && len(st.drift) == 0 && st.dirExists {
		return res, nil
	}

	tmp, err := os.MkdirTemp(parent, "."+base+".render-")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	swapped := false
	defer func() {
		if !swapped {
			os.RemoveAll(tmp)
		}
	}()
	if st.dirExists {
		if err := carryOver(dir, tmp, st.managed); err != nil {
			return nil, fmt.Errorf("write %s: carry over unmanaged files: %w", dir, err)
		}
		if len(st.drift) > 0 {
			if res.BackedUp, err = backup(dir, tmp, st.drift); err != nil {
				return nil, fmt.Errorf("write %s: back up hand-edited files: %w", dir, err)
			}
		}
	}
	for _, f := range tree {
		if testHookWriteFile != nil {
			if err := testHookWriteFile(f.Path); err != nil {
				return nil, fmt.Errorf("write %s: %s: %w", dir, f.Path, err)
			}
		}
		if err := writeFile(filepath.Join(tmp, filepath.FromSlash(f.Path)), f.Data, f.Mode.Perm()); err != nil {
			return nil, fmt.Errorf("write %s: %s: %w", dir, f.Path, err)
		}
	}
	mode := fs.FileMode(0o755)
	if st.dirExists {
		mode = st.dirMode
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	for _, hook := range []func() error{testHookBeforeSwap, opts.BeforeSwap} {
		if hook == nil {
			continue
		}
		if err := hook(); err != nil {
			return nil, fmt.Errorf("write %s: %w", dir, err)
		}
	}
	old, err := swapIn(tmp, dir, st.dirExists)
	if err != nil {
		return nil, fmt.Errorf("write %s: swap in the new folder: %w", dir, err)
	}
	swapped = true
	_ = syncDir(parent)
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return res, fmt.Errorf("write %s: written, but the previous folder %s is left: %w", dir, old, err)
		}
	}
	return res, nil
}

// validateChanged runs the deferred checks of the compose files that are to
// be written, or whose .env is, or that the manifest does not record as
// they are.
func validateChanged(tree Tree, st *state) error {
	unchanged := make(map[string]bool, len(st.unchanged))
	for _, p := range st.unchanged {
		unchanged[p] = true
	}
	return validateTree(tree, func(c *composeCheck) bool {
		return !st.recorded[c.path] || !unchanged[c.envPath]
	})
}

func checkTree(tree Tree) error {
	seen := map[string]bool{}
	hasManifest := false
	for _, f := range tree {
		if err := checkPath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%s twice in the tree", f.Path)
		}
		seen[f.Path] = true
		hasManifest = hasManifest || f.Path == ManifestFile
	}
	for p := range seen {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if seen[d] {
				return fmt.Errorf("%s is both a file and a folder in the tree", d)
			}
		}
	}
	if !hasManifest {
		return fmt.Errorf("the tree has no %s (use the Tree that Render returns)", ManifestFile)
	}
	return nil
}

func checkPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "\\") {
		return fmt.Errorf("bad path %q in the tree", p)
	}
	return nil
}

// state is what Write found in the folder.
type state struct {
	dirExists bool
	dirMode   fs.FileMode
	// managed are paths owned by render: the old manifest's and the tree's.
	managed                     map[string]bool
	drift                       []string
	written, unchanged, removed []string
	// recorded are the files on disk as rendered and as the manifest of
	// the Write that put them there says: checked when they were written.
	recorded map[string]bool
}

func inspect(dir string, tree Tree, overwrite bool) (*state, error) {
	st := &state{managed: map[string]bool{}, recorded: map[string]bool{}}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a folder", dir)
	default:
		st.dirExists = true
		st.dirMode = fi.Mode().Perm()
	}
	old := map[string]ManifestEntry{}
	if st.dirExists {
		m, err := ReadManifest(dir)
		switch {
		case err == nil:
			for _, e := range m.Files {
				old[e.Path] = e
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			// A manifest that does not parse was edited by hand: it is
			// drift of its own, and every file on disk is then unknown.
			st.drift = append(st.drift, ManifestFile)
		}
	}
	for p := range old {
		st.managed[p] = true
	}
	if st.dirExists {
		if err := noLinkedFolders(dir, tree); err != nil {
			return nil, err
		}
	}
	drift := map[string]bool{}
	for _, f := range tree {
		st.managed[f.Path] = true
		cur, mode, err := readExisting(dir, f.Path, st.dirExists)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			st.written = append(st.written, f.Path)
			continue
		}
		if bytes.Equal(cur, f.Data) && mode == f.Mode.Perm() {
			st.unchanged = append(st.unchanged, f.Path)
			if e, ok := old[f.Path]; ok && f.check != nil && e.SHA256 == sha(cur) {
				st.recorded[f.Path] = true
			}
		} else {
			st.written = append(st.written, f.Path)
		}
		if f.Path == ManifestFile || bytes.Equal(cur, f.Data) {
			continue
		}
		if e, ok := old[f.Path]; !ok || e.SHA256 != sha(cur) {
			drift[f.Path] = true
		}
	}
	treeHas := map[string]bool{}
	for _, f := range tree {
		treeHas[f.Path] = true
	}
	for p, e := range old {
		if treeHas[p] {
			continue
		}
		cur, _, err := readExisting(dir, p, st.dirExists)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			continue
		}
		st.removed = append(st.removed, p)
		if e.SHA256 != sha(cur) {
			drift[p] = true
		}
	}
	for p := range drift {
		st.drift = append(st.drift, p)
	}
	sort.Strings(st.drift)
	sort.Strings(st.removed)
	return st, nil
}

// noLinkedFolders refuses a symbolic link where render has a folder (a
// service's folder, infrastructure/): render would write the compose file
// and the 0600 .env wherever the link points.
func noLinkedFolders(dir string, tree Tree) error {
	seen := map[string]bool{}
	for _, f := range tree {
		for d := path.Dir(f.Path); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(d)))
			if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				target, _ := os.Readlink(filepath.Join(dir, filepath.FromSlash(d)))
				return fmt.Errorf("%s/ is a symbolic link (to %s) where render keeps a folder of its own: "+
					"render writes real files only, never through a link; remove the link", d, target)
			}
		}
	}
	return nil
}

// readExisting returns the content of a file of the folder, nil when there
// is none. Something other than a regular file where render puts one is
// reported as drift-worthy content.
func readExisting(dir, p string, dirExists bool) ([]byte, fs.FileMode, error) {
	if !dirExists {
		return nil, 0, nil
	}
	full := filepath.Join(dir, filepath.FromSlash(p))
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if fi.IsDir() {
		return nil, 0, fmt.Errorf("%s is a folder where render writes a file; move it away", p)
	}
	if !fi.Mode().IsRegular() {
		// A symlink or other special file where render puts a regular one
		// was put there by hand: reported as drift, backed up as a note.
		return []byte("(" + fi.Mode().String() + ")\n"), fi.Mode().Perm(), nil
	}
	b, err := os.ReadFile(full)
	if err != nil {
		return nil, 0, err
	}
	return b, fi.Mode().Perm(), nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// carryOver links every entry of the old folder that render does not
// manage into the new one. Hard links keep content, mode and times without
// copying; the old folder is only removed after the swap.
func carryOver(from, to string, managed map[string]bool) error {
	managedDirs := map[string]bool{}
	for p := range managed {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			managedDirs[d] = true
		}
	}
	return filepath.WalkDir(from, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, full)
		if err != nil || rel == "." {
			return err
		}
		p := filepath.ToSlash(rel)
		if managed[p] {
			return nil
		}
		target := filepath.Join(to, rel)
		if d.IsDir() {
			if managedDirs[p] {
				return nil // made when something lands in it
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, fi.Mode().Perm())
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.Link(full, target); err != nil {
			return copyEntry(full, target, d)
		}
		return nil
	})
}

func copyEntry(from, to string, d fs.DirEntry) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		dest, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(dest, to)
	case fi.Mode().IsRegular():
		in, err := os.Open(from)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Chtimes(to, fi.ModTime(), fi.ModTime())
	}
	return nil // sockets and pipes do not survive a copy; nothing renders them
}

// Backup is a hand-edited file that Write replaced, and the copy of it
// kept, both relative to the deployment folder.
type Backup struct{ File, Copy string }

// backup copies hand-edited files into .backup/<timestamp>/ of the new
// folder.
func backup(from, to string, files []string) ([]Backup, error) {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	root := BackupDir + "/" + stamp
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(to, filepath.FromSlash(root))); errors.Is(err, fs.ErrNotExist) {
			break
		}
		root = BackupDir + "/" + stamp + "-" + strconv.Itoa(i)
	}
	var out []Backup
	for _, p := range files {
		cur, mode, err := readExisting(from, p, true)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			continue
		}
		bp := root + "/" + p
		if err := writeFile(filepath.Join(to, filepath.FromSlash(bp)), cur, mode); err != nil {
			return nil, err
		}
		out = append(out, Backup{File: p, Copy: bp})
	}
	return out, nil
}

func writeFile(full string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	// O_NOFOLLOW: never write through a link that is in the way.
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// The umask must not decide the mode: .env files are 0600, scripts 0755.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recoverLeftovers finishes or undoes a write that was interrupted (power
// loss, kill -9): a folder moved aside with nothing in its place is moved
// back; any other leftover is the remains of a write and is removed.
func recoverLeftovers(parent, base string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	dir := filepath.Join(parent, base)
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(parent, name)
		switch {
		case strings.HasPrefix(name, "."+base+".old-"):
			if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(full, dir); err != nil {
					return err
				}
				continue
			}
			if err := os.RemoveAll(full); err != nil {
				return err
			}
		case strings.HasPrefix(name, "."+base+".render-"):
			if err := os.RemoveAll(full); err != nil {
				return err
			}
		}
	}
	return nil
}
