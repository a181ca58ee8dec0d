// Package hostfs does the file work in an environment's folder on its
// deployment host, through that host's Docker API alone: the host needs
// nothing but Docker, and no shell command is ever composed from catalog
// values.
//
// An agent container of the release tool (hosttool, a static Go program in
// a scratch image built from source here) runs on the host with the folder
// bind-mounted at /deploy and nothing else: no network, a read-only root
// filesystem, no new privileges and only the capabilities that writing
// files as the folder's owner needs. Each operation is an exec in it,
// which costs a few milliseconds instead of the fraction of a second a
// container per operation costs.
//
// Everything the host answers is checked before use: release ids against
// a strict pattern, sizes against fixed bounds.
package hostfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// toolSource is the host tool's whole program.
//
//go:embed hosttool/main.go
var toolSource embed.FS

// ToolRepo is the repository of the host tool image on deployment hosts;
// its tag is a hash of the tool's source and the host's architecture.
const ToolRepo = "maestro-deploy/release-tool"

// Bounds on what is read back from a host.
const (
	maxOutput    = 1 << 20  // a tool answer
	maxFileSize  = 4 << 20  // one fetched release file
	maxFetched   = 32 << 20 // a whole fetched release
	maxFileCount = 1000
	// maxAudit is what the host tool may answer of the audit log: the
	// newest records that fit, well within maxOutput.
	maxAudit = maxOutput / 2
)

// IDPattern is what a release id looks like: UTC time, an optional short
// commit, an optional sequence number. Ids are path elements on the host,
// so nothing else is ever accepted, from the caller or from the host.
var IDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{4,40})?(\.[0-9]+)?$`)

// File is one file of a release.
type File struct {
	Data []byte
	Mode os.FileMode
}

// State is what the host reports after each operation.
type State struct {
	// Releases are the release ids, oldest first.
	Releases []string `json:"releases"`
	// Current is the release the current link points at ("" = none).
	Current string `json:"current"`
	// Live are the releases that went live (were current once), oldest
	// first; the others were left by a promote stopped before its checks
	// passed. Empty on a host whose releases predate the record: then
	// every release counts (WentLive).
	Live []string `json:"live"`
	// Removed are the releases an operation removed.
	Removed []string `json:"removed"`
}

// WentLive reports whether release id was ever current.
func (s *State) WentLive(id string) bool {
	return id == s.Current || len(s.Live) == 0 || slices.Contains(s.Live, id)
}

// validate refuses a state whose ids are not release ids: they flow into
// paths, prune and rollback.
func (s *State) validate() error {
	for _, id := range append(append(append(slices.Clone(s.Releases), s.Removed...), s.Live...), s.Current) {
		if id != "" && !IDPattern.MatchString(id) {
			return fmt.Errorf("the host reported %q, which is not a release id", ui.Clean(id))
		}
	}
	return nil
}

// FS is an environment's folder on its host.
type FS struct {
	api   *client.Client
	host  string
	dir   string
	agent string // container ID
	ref   string // the tool image
}

// Dir is the folder on the host.
func (f *FS) Dir() string { return f.dir }

// Open makes sure the host runs the agent for dir (building the tool image
// there first when it is missing) and that dir belongs to the project's
// environment env, claiming it on first use. Nothing else changes: agents
// of other versions of this tool stay (see Lock).
func Open(ctx context.Context, eng *engine.Engine, dir, project, env string) (*FS, error) {
	return open(ctx, eng, dir, project, env, toolImage)
}

// toolImage is the host tool's image.
var toolImage = engine.GoImage{
	Name: "release tool", Repo: ToolRepo, Source: toolSource, Dir: "hosttool",
	Module: "hosttool", Package: ".", Binary: "hosttool",
	Labels: map[string]string{labels.Tool: "1"},
}

func open(ctx context.Context, eng *engine.Engine, dir, project, env string, img engine.GoImage) (*FS, error) {
	if !path.IsAbs(dir) || path.Clean(dir) != dir {
		return nil, fmt.Errorf("release folder %q on %s: not a clean absolute path", dir, eng.Host)
	}
	ref, err := engine.EnsureGoImage(ctx, eng.API, img)
	if err != nil {
		return nil, err
	}
	f := &FS{api: eng.API, host: eng.Host, dir: dir, ref: ref}
	if f.agent, err = ensureAgent(ctx, eng.API, ref, dir); err != nil {
		return nil, fmt.Errorf("release tool on %s: %w", eng.Host, err)
	}
	var st State
	if err := f.run(ctx, &st, "claim", project, env); err != nil {
		return nil, err
	}
	return f, nil
}

// agentRevision changes with the agent container's settings: it is part of
// the agent's name, as the tool image is.
const agentRevision = "3"

// AgentName is the agent container's name for a folder and a tool image:
// one agent per folder, host and version of the tool. Versions have agents
// of their own because the lock lives in a process of the agent that took
// it: replacing another version's agent would drop a lock it holds.
func AgentName(dir, ref string) string {
	d := sha256.Sum256([]byte(dir))
	v := sha256.Sum256([]byte(ref + "\x00" + agentRevision))
	return "maestro-agent-" + hex.EncodeToString(d[:6]) + "-" + hex.EncodeToString(v[:4])
}

// Agent is the ID of the agent container this FS works through.
func (f *FS) Agent() string { return f.agent }

// ensureAgent returns the running agent of dir and the tool image ref on
// the engine, creating it when missing. Agents of other tool versions are
// left alone: they may hold the lock (Lock removes them once it holds it).
func ensureAgent(ctx context.Context, api *client.Client, ref, dir string) (string, error) {
	name := AgentName(dir, ref)
	in, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	switch {
	case err == nil:
		c := in.Container
		fit := c.Config != nil && c.Config.Image == ref && c.Config.Labels[labels.ToolDir] == dir &&
			c.Config.Labels[labels.ToolRevision] == agentRevision
		if fit && c.State != nil && c.State.Running {
			return c.ID, nil
		}
		if fit && c.State != nil && !c.State.Running {
			if _, err := api.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err == nil {
				return c.ID, nil
			}
		}
		// Not this version's agent for dir, whatever its name says, or one
		// that will not start: no lock can be held through it.
		if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !engine.IsNotFound(err) {
			return "", fmt.Errorf("replace agent %s: %w", name, err)
		}
	case !engine.IsNotFound(err):
		return "", fmt.Errorf("agent %s: %w", name, err)
	}
	// Threads count: a Go process has several, and an exec runs beside
	// the agent and a held lock.
	pids := int64(128)
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: ref, Cmd: []string{"serve"},
			Labels: map[string]string{labels.Tool: "1", labels.ToolDir: dir, labels.ToolRevision: agentRevision}},
		HostConfig: &container.HostConfig{
			// Binds (not Mounts) so that a missing folder is created.
			Binds:          []string{dir + ":/deploy"},
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			// Root writing into the owner's folder and giving files to
			// the owner: nothing more.
			CapAdd:        []string{"CHOWN", "DAC_OVERRIDE", "FOWNER"},
			SecurityOpt:   []string{"no-new-privileges"},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Resources:     container.Resources{Memory: 64 << 20, PidsLimit: &pids},
		},
	})
	if err != nil {
		if strings.Contains(err.Error(), "Conflict") {
			// Another run created it at the same moment: use that one.
			return ensureAgent(ctx, api, ref, dir)
		}
		return "", fmt.Errorf("create agent %s: %w", name, err)
	}
	if _, err := api.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return "", fmt.Errorf("start agent %s: %w", name, err)
	}
	return created.ID, nil
}

// run execs the tool in the agent with args and decodes its answer into
// out.
func (f *FS) run(ctx context.Context, out any, args ...string) error {
	stdout, err := f.exec(ctx, args)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		return fmt.Errorf("release tool %s on %s: bad answer %q: %w", args[0], f.host, ui.Shorten(ui.Clean(string(stdout)), 200), err)
	}
	if st, ok := out.(*State); ok {
		return st.validate()
	}
	return nil
}

func (f *FS) exec(ctx context.Context, args []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	code, err := engine.ExecTo(ctx, f.api, f.agent, append([]string{"/hosttool"}, args...), maxOutput, &stdout, &stderr)
	if err != nil {
		return nil, fmt.Errorf("release tool %s on %s: %w", args[0], f.host, err)
	}
	if code != 0 {
		return nil, fmt.Errorf("on %s, in %s: %s", f.host, f.dir, ui.Shorten(ui.Clean(strings.TrimSpace(stderr.String())), 2000))
	}
	return stdout.Bytes(), nil
}

func checkID(id string) error {
	if !IDPattern.MatchString(id) {
		return fmt.Errorf("invalid release id %q", id)
	}
	return nil
}

// List returns the releases on the host and the current one.
func (f *FS) List(ctx context.Context) (*State, error) {
	var st State
	return &st, f.run(ctx, &st, "list")
}

// Disk is the space of the filesystem holding an environment's folder.
type Disk struct {
	Free  uint64 `json:"free"`
	Total uint64 `json:"total"`
}

// Disk says how much space the folder's filesystem has left.
func (f *FS) Disk(ctx context.Context) (*Disk, error) {
	var d Disk
	return &d, f.run(ctx, &d, "df")
}

// DiskAt says how much space the filesystem holding path on the host has
// left, path being any folder (the engine's data root, say): the tool runs
// once in a throwaway container that sees path read-only, with no
// network and no capability.
func (f *FS) DiskAt(ctx context.Context, path string) (*Disk, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("disk of %q on %s: not an absolute path", path, f.host)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	created, err := f.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: f.ref, Cmd: []string{"df"}, Env: []string{"HOSTTOOL_ROOT=/probe"},
			Labels: map[string]string{labels.Tool: "1"}},
		HostConfig: &container.HostConfig{
			Binds:       []string{path + ":/probe:ro"},
			NetworkMode: "none", ReadonlyRootfs: true, CapDrop: []string{"ALL"},
			SecurityOpt: []string{"no-new-privileges"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("disk of %s on %s: %w", path, f.host, err)
	}
	defer f.api.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true})
	x, err := engine.RunToExit(ctx, f.api, created.ID)
	switch {
	case err != nil:
		return nil, fmt.Errorf("disk of %s on %s: %w", path, f.host, err)
	case x.Status != 0:
		return nil, fmt.Errorf("disk of %s on %s: the tool exited with status %d: %s", path, f.host, x.Status,
			ui.Shorten(ui.Clean(string(bytes.TrimSpace(x.Stderr))), 200))
	}
	var d Disk
	if err := json.Unmarshal(x.Stdout, &d); err != nil {
		return nil, fmt.Errorf("disk of %s on %s: bad answer %q: %w", path, f.host, ui.Shorten(ui.Clean(string(x.Stdout)), 200), err)
	}
	return &d, nil
}

// Upload puts the files under releases/<id> (never over an existing
// release), owned like the folder. They arrive whole: they are copied to
// .incoming/<id> first and moved into place in one rename.
func (f *FS) Upload(ctx context.Context, id string, files map[string]File) (*State, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		var chain []string
		for p := d; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			chain = append([]string{p}, chain...)
		}
		for _, p := range chain {
			if dirs[p] {
				continue
			}
			dirs[p] = true
			if err := tw.WriteHeader(&tar.Header{Name: p + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	}
	base := path.Join(".incoming", id)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !validRelPath(name) {
			return nil, fmt.Errorf("upload %s: file name %q leaves the release folder", id, name)
		}
		fl := files[name]
		full := path.Join(base, name)
		if err := mkdir(path.Dir(full)); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: full, Mode: int64(fl.Mode.Perm()), Size: int64(len(fl.Data)),
			Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(fl.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if _, err := f.api.CopyToContainer(ctx, f.agent, client.CopyToContainerOptions{DestinationPath: "/deploy", Content: &buf}); err != nil {
		return nil, fmt.Errorf("upload to %s on %s: %w", f.dir, f.host, err)
	}
	var st State
	return &st, f.run(ctx, &st, "stage", id)
}

func validRelPath(name string) bool {
	return name != "" && !path.IsAbs(name) && path.Clean(name) == name && name != ".." && !strings.HasPrefix(name, "../")
}

// Activate points current at the release, atomically.
func (f *FS) Activate(ctx context.Context, id string) (*State, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var st State
	return &st, f.run(ctx, &st, "activate", id)
}

// Remove deletes a release that is not current.
func (f *FS) Remove(ctx context.Context, id string) (*State, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var st State
	return &st, f.run(ctx, &st, "remove", id)
}

// Prune keeps the newest keep releases plus current and protected ones.
func (f *FS) Prune(ctx context.Context, keep int, protected ...string) (*State, error) {
	for _, id := range protected {
		if err := checkID(id); err != nil {
			return nil, err
		}
	}
	var st State
	return &st, f.run(ctx, &st, append([]string{"prune", fmt.Sprint(keep)}, protected...)...)
}

// ErrTooLarge is a fetched release over the bounds a release can have.
var ErrTooLarge = errors.New("larger than any release this tool writes")

// Fetch reads the files of releases/<id> from the host. It takes regular
// files only, within fixed bounds of size and number: what a host sends
// back is not trusted.
func (f *FS) Fetch(ctx context.Context, id string) (map[string]File, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	res, err := f.api.CopyFromContainer(ctx, f.agent, client.CopyFromContainerOptions{SourcePath: "/deploy/releases/" + id + "/."})
	if err != nil {
		return nil, fmt.Errorf("read release %s from %s on %s: %w", id, f.dir, f.host, err)
	}
	defer res.Content.Close()
	files := map[string]File{}
	total := 0
	tr := tar.NewReader(io.LimitReader(res.Content, maxFetched+1<<20))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read release %s: %w", id, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		// Copying "<dir>/." names the entries "./<path>".
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if !validRelPath(name) {
			return nil, fmt.Errorf("read release %s: unexpected path %q", id, ui.Clean(hdr.Name))
		}
		if hdr.Size > maxFileSize || total+int(hdr.Size) > maxFetched || len(files) >= maxFileCount {
			return nil, fmt.Errorf("read release %s: %s is %w", id, ui.Clean(name), ErrTooLarge)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxFileSize))
		if err != nil {
			return nil, err
		}
		total += len(b)
		files[name] = File{Data: b, Mode: os.FileMode(hdr.Mode).Perm()}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("release %s on %s holds no files", id, f.dir)
	}
	return files, nil
}
