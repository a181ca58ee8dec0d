// Command hosttool runs on a deployment host, in a scratch container whose
// only mount is the environment's deployment folder at /deploy. It does the
// few file operations promote needs there that the Docker API cannot do by
// itself: move an uploaded release into place, swap the `current` symlink
// atomically, list and prune releases, and claim the folder for one
// environment. Every operation takes an argument list, never a shell
// string, and release ids are checked against a strict pattern so that no
// path can leave /deploy.
//
// `hosttool serve` is the agent: it does nothing but wait, so that the
// operations run as fast execs in its container instead of a container
// each. Every other command prints one JSON object on stdout and exits 0,
// or prints the error on stderr and exits 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// root is where the deployment folder is mounted.
var root = "/deploy"

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{4,40})?(\.[0-9]+)?$`)

type state struct {
	Releases []string `json:"releases"`
	Current  string   `json:"current"`
	Live     []string `json:"live"`
	Removed  []string `json:"removed,omitempty"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, errBusy) {
			os.Exit(3) // the answer was printed
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// errBusy is hold's answer when a live session holds the lock.
var errBusy = errors.New("busy")

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: hosttool serve|claim|hold|audit-append|audit-read|stage|activate|list|prune|remove|df ...")
	}
	if v := os.Getenv("HOSTTOOL_ROOT"); v != "" {
		root = v // tests run the tool outside a container
	}
	var out state
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve()
	case "hold":
		if len(rest) != 1 {
			return errors.New("usage: hosttool hold HOLDER-JSON")
		}
		return hold(rest[0], os.Stdin, os.Stdout)
	case "audit-append":
		if len(rest) != 1 {
			return errors.New("usage: hosttool audit-append RECORD-JSON")
		}
		return auditAppend(rest[0])
	case "audit-read":
		limit, perr := strconv.ParseInt(strings.Join(rest, ""), 10, 64)
		if len(rest) != 1 || perr != nil || limit < 2 {
			return errors.New("usage: hosttool audit-read MAX-BYTES")
		}
		return auditRead(os.Stdout, limit)
	case "df":
		return df(os.Stdout)
	case "claim":
		if len(rest) != 2 {
			return errors.New("usage: hosttool claim PROJECT ENVIRONMENT")
		}
		err = claim(rest[0], rest[1])
	case "stage":
		err = withID(rest, stage)
	case "activate":
		err = withID(rest, activate)
	case "remove":
		err = withID(rest, remove)
	case "list":
	case "prune":
		if len(rest) < 1 {
			return errors.New("usage: hosttool prune KEEP [PROTECTED-ID...]")
		}
		keep, perr := strconv.Atoi(rest[0])
		if perr != nil || keep < 1 {
			return fmt.Errorf("prune: keep must be a positive number, got %q", rest[0])
		}
		for _, id := range rest[1:] {
			if !idPattern.MatchString(id) {
				return fmt.Errorf("invalid release id %q", id)
			}
		}
		out.Removed, err = prune(keep, rest[1:])
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		return err
	}
	out.Releases, out.Current, err = list()
	if err != nil {
		return err
	}
	if out.Live, err = live(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// serve waits until the container is stopped: the agent's whole work is to
// be there for execs.
func serve() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return nil
}

// ownerFile records which project and environment the folder belongs to.
const ownerFile = ".maestro-owner"

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// claim makes the folder the given environment's, or fails when another
// environment already has it: pruning one environment's releases must
// never delete another's.
func claim(project, env string) error {
	if !namePattern.MatchString(project) || !namePattern.MatchString(env) {
		return fmt.Errorf("invalid project or environment name %q, %q", project, env)
	}
	want := project + "/" + env + "\n"
	p := filepath.Join(root, ownerFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil && string(b) == want:
		return nil
	case err == nil:
		return fmt.Errorf("this folder belongs to environment %s (project/environment): two environments cannot share a folder; give each its own dir",
			strings.TrimSpace(string(b)))
	case !os.IsNotExist(err):
		return err
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(want), 0o644); err != nil {
		return err
	}
	// Link, not rename: a claim by another environment at the same moment
	// is never overwritten.
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if os.IsExist(err) {
			return claim(project, env)
		}
		return err
	}
	return syncDir(root)
}

func withID(args []string, f func(string) error) error {
	if len(args) != 1 || !idPattern.MatchString(args[0]) {
		return fmt.Errorf("expected one release id, got %q", args)
	}
	return f(args[0])
}

func releases() string { return filepath.Join(root, "releases") }

// stage moves an uploaded release from .incoming/ID to releases/ID, giving
// it to the owner of the deployment folder (files arrive owned by root).
func stage(id string) error {
	src := filepath.Join(root, ".incoming", id)
	dst := filepath.Join(releases(), id)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("release %s already exists on this host", id)
	}
	if err := os.MkdirAll(releases(), 0o755); err != nil {
		return err
	}
	if st, err := os.Stat(root); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
				if err == nil {
					_ = os.Lchown(p, int(sys.Uid), int(sys.Gid))
				}
				return nil
			})
			_ = os.Lchown(releases(), int(sys.Uid), int(sys.Gid))
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(root, ".incoming"))
	return syncDir(releases())
}

// activate points `current` at releases/ID with a rename over the old
// link, so that a reader sees the old or the new release, never neither.
// liveDir holds an empty file per release that went live (was current
// once): a release uploaded by a promote that was killed before it checked
// the release never went live, and rollback must not take it. It is beside
// releases/, not in them, because a release's folder is compared with its
// record.
func liveDir() string { return filepath.Join(root, ".live") }

// live lists the releases that went live, oldest first.
func live() ([]string, error) {
	entries, err := os.ReadDir(liveDir())
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	ids := []string{}
	for _, e := range entries {
		if idPattern.MatchString(e.Name()) {
			if _, err := os.Stat(filepath.Join(releases(), e.Name())); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// markLive records that id went live. The first time on a host whose
// releases predate the marks, those releases (then all taken for live) are
// marked too, so that rollback still finds them.
func markLive(id string) error {
	if _, err := os.Stat(liveDir()); os.IsNotExist(err) {
		if err := os.MkdirAll(liveDir(), 0o755); err != nil {
			return err
		}
		older, _, err := list()
		if err != nil {
			return err
		}
		for _, o := range older {
			if o < id {
				if err := os.WriteFile(filepath.Join(liveDir(), o), nil, 0o644); err != nil {
					return err
				}
			}
		}
	}
	if err := os.WriteFile(filepath.Join(liveDir(), id), nil, 0o644); err != nil {
		return err
	}
	return syncDir(liveDir())
}

func activate(id string) error {
	if st, err := os.Stat(filepath.Join(releases(), id)); err != nil || !st.IsDir() {
		return fmt.Errorf("release %s is not on this host", id)
	}
	// Marked before current moves: a release current points at is live,
	// marked or not, and a mark without the move only makes a release
	// that passed its checks eligible for rollback.
	if err := markLive(id); err != nil {
		return err
	}
	tmp := filepath.Join(root, ".current.new")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join("releases", id), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, "current")); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(root)
}

func remove(id string) error {
	_, cur, err := list()
	if err != nil {
		return err
	}
	if id == cur {
		return fmt.Errorf("release %s is current: not removed", id)
	}
	_ = os.RemoveAll(filepath.Join(root, ".incoming", id))
	_ = os.Remove(filepath.Join(liveDir(), id))
	return os.RemoveAll(filepath.Join(releases(), id))
}

// prune keeps the newest keep releases that went live, the current one
// and the protected ones, and removes the rest: older live ones, and those
// that never went live (left by a promote that was killed).
func prune(keep int, protected []string) ([]string, error) {
	ids, cur, err := list()
	if err != nil {
		return nil, err
	}
	wasLive, err := live()
	if err != nil {
		return nil, err
	}
	safe := map[string]bool{cur: true}
	for _, p := range protected {
		safe[p] = true
	}
	// Before any mark (a host of an older version), every release counts
	// as live.
	marked := len(wasLive) > 0
	var removed []string
	kept := 0
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		isLive := !marked || slices.Contains(wasLive, id)
		if isLive && kept < keep {
			kept++
			continue
		}
		if safe[id] {
			continue
		}
		if err := remove(id); err != nil {
			return removed, err
		}
		removed = append(removed, id)
	}
	sort.Strings(removed)
	return removed, nil
}

// list returns the release ids, oldest first (ids sort by time), and the
// one `current` points at.
func list() ([]string, string, error) {
	entries, err := os.ReadDir(releases())
	if err != nil && !os.IsNotExist(err) {
		return nil, "", err
	}
	ids := []string{}
	for _, e := range entries {
		if e.IsDir() && idPattern.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	cur := ""
	if target, err := os.Readlink(filepath.Join(root, "current")); err == nil {
		cur = filepath.Base(target)
	}
	return ids, cur, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// The lock of the folder: lockFile is flock()ed by the holder's process
// for as long as it holds the lock, holderFile says who that is.
const (
	lockFile   = ".lock"
	holderFile = ".lock-holder"
)

// maxRecord bounds a holder description or an audit record.
const maxRecord = 64 << 10

// hold takes the folder's lock for the holder described by holder (JSON)
// and keeps it until its standard input says "release" or ends: the
// caller's connection. A
// caller that dies, or whose ssh session is cut, ends that input too, and
// the kernel drops the flock with this process, so a lock can never
// outlive its holder's session. It prints one JSON line: {"held":true}
// with "took_over" set to the previous holder when that one's session
// ended without releasing, or {"busy":true,"holder":...} and exit status 3
// when a live session holds it.
func hold(holder string, stdin io.Reader, stdout io.Writer) error {
	if len(holder) > maxRecord || !json.Valid([]byte(holder)) {
		return errors.New("hold: the holder must be a JSON object of at most 64 kB")
	}
	f, err := os.OpenFile(filepath.Join(root, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	prev, _ := os.ReadFile(filepath.Join(root, holderFile))
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		out := map[string]any{"busy": true}
		if json.Valid(prev) {
			out["holder"] = json.RawMessage(prev)
		}
		_ = json.NewEncoder(stdout).Encode(out)
		return errBusy
	}
	// The flock is ours: a holder file left behind is that of a session
	// that ended without releasing.
	out := map[string]any{"held": true}
	if json.Valid(prev) && len(prev) > 0 {
		out["took_over"] = json.RawMessage(prev)
	}
	if err := writeAtomic(filepath.Join(root, holderFile), []byte(holder)); err != nil {
		return err
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		return err
	}
	// The holder releases by writing "release"; input that just ends is a
	// holder gone (killed, or its session cut): its description stays,
	// for the next holder to say whom it took over from.
	line, _ := bufio.NewReader(io.LimitReader(stdin, 64)).ReadString('\n')
	if strings.TrimSpace(line) == "release" {
		return os.Remove(filepath.Join(root, holderFile))
	}
	return nil
}

func writeAtomic(p string, b []byte) error {
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// auditFile is the folder's audit log: one JSON record per line, appended.
const auditFile = "audit.log"

// auditAppend appends one record (a JSON object) to the audit log and
// syncs it: a promotion's record survives a crash of the host right after.
func auditAppend(record string) error {
	var obj map[string]any
	if len(record) > maxRecord || json.Unmarshal([]byte(record), &obj) != nil {
		return errors.New("audit-append: the record must be a JSON object of at most 64 kB")
	}
	line, err := json.Marshal(obj) // one line, whatever the input's layout
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(root, auditFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]bool{"appended": true})
}

// auditRead prints the audit log's newest records, as a JSON array, oldest
// first: as many whole records as fit in limit bytes (the caller's bound on
// what it reads back), the records exactly as the log holds them. Only the
// log's last limit bytes are read, however large it has grown.
func auditRead(w io.Writer, limit int64) error {
	f, err := os.Open(filepath.Join(root, auditFile))
	if os.IsNotExist(err) {
		_, err = io.WriteString(w, "[]\n")
		return err
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	from := max(st.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, from, st.Size()-from))
	if err != nil {
		return err
	}
	if from > 0 {
		// The first line is cut, or whole by chance: dropped either way.
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b) - 1
		}
		b = b[i+1:]
	}
	var recs [][]byte
	size := int64(2) // the brackets
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) == 0 || !json.Valid(l) {
			continue
		}
		if size += int64(len(l)) + 1; size > limit {
			break
		}
		recs = append(recs, l)
	}
	slices.Reverse(recs)
	// Written as they are: re-encoding would escape '<' and '&' and could
	// grow the answer past the caller's bound.
	_, err = fmt.Fprintf(w, "[%s]\n", bytes.Join(recs, []byte(",")))
	return err
}

// disk is df's answer: the space of the filesystem holding the
// environment's folder.
type disk struct {
	Free  uint64 `json:"free"`
	Total uint64 `json:"total"`
}

// df prints how much of the folder's filesystem is free, for doctor.
func df(w io.Writer) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return fmt.Errorf("df %s: %w", root, err)
	}
	return json.NewEncoder(w).Encode(disk{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)})
}
