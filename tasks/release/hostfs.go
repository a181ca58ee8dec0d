package release

import (
	"archive/tar"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// hostToolSource is the host tool's whole program: it is compiled here and
// sent to the host's engine as a FROM scratch build context, so that the
// host needs nothing but Docker, and no shell command is ever composed.
//
//go:embed hosttool/main.go
var hostToolSource embed.FS

// HostToolRepo is the repository of the host tool image on deployment
// hosts; its tag is a hash of the tool's source and the host's
// architecture.
const HostToolRepo = "maestro-deploy/release-tool"

// hostFS does file work in an environment's folder on its host, through
// that host's Docker API: a short-lived container of the host tool image
// with the folder bind-mounted at /deploy.
type hostFS struct {
	api   *client.Client
	dir   string // the environment's folder on the host
	image string
}

// hostState is what the host tool reports after each operation.
type hostState struct {
	Releases []string `json:"releases"`
	Current  string   `json:"current"`
	Removed  []string `json:"removed"`
}

// newHostFS makes sure the tool image is on the host (building it there
// when missing) and returns a hostFS for dir.
func newHostFS(ctx context.Context, api *client.Client, dir string) (*hostFS, error) {
	ref, err := ensureTool(ctx, api)
	if err != nil {
		return nil, err
	}
	return &hostFS{api: api, dir: dir, image: ref}, nil
}

// ensureTool builds the host tool image on the host's engine when it is
// missing and returns its reference.
func ensureTool(ctx context.Context, api *client.Client) (string, error) {
	return engine.EnsureGoImage(ctx, api, engine.GoImage{
		Name:    "release tool",
		Repo:    HostToolRepo,
		Source:  hostToolSource,
		Dir:     "hosttool",
		Module:  "hosttool",
		Package: ".",
		Binary:  "hosttool",
		// Root: the tool writes into the environment's folder as its owner
		// on the host.
		Labels: map[string]string{labels.Tool: "1"},
	})
}

// container creates a tool container with the folder mounted; the caller
// removes it.
func (h *hostFS) container(ctx context.Context, args []string) (string, error) {
	created, err := h.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: h.image, Cmd: args, Labels: map[string]string{labels.Tool: "1"}},
		HostConfig: &container.HostConfig{
			// Binds (not Mounts) so that a missing folder is created.
			Binds:       []string{h.dir + ":/deploy"},
			NetworkMode: "none",
		},
	})
	if err != nil {
		return "", fmt.Errorf("release tool on %s: %w", h.dir, err)
	}
	return created.ID, nil
}

func (h *hostFS) remove(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = h.api.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true})
}

// run runs the tool with args, after copying upload (a tar, may be nil)
// into /deploy, and returns the state it reports.
func (h *hostFS) run(ctx context.Context, upload io.Reader, args ...string) (*hostState, error) {
	id, err := h.container(ctx, args)
	if err != nil {
		return nil, err
	}
	defer h.remove(ctx, id)
	if upload != nil {
		if _, err := h.api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/deploy", Content: upload}); err != nil {
			return nil, fmt.Errorf("upload to %s: %w", h.dir, err)
		}
	}
	wait := h.api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := h.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("release tool %s: %w", args[0], err)
	}
	var code int64
	select {
	case r := <-wait.Result:
		code = r.StatusCode
	case err := <-wait.Error:
		return nil, fmt.Errorf("release tool %s: %w", args[0], err)
	}
	logs, err := h.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("release tool %s: logs: %w", args[0], err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		return nil, fmt.Errorf("release tool %s: logs: %w", args[0], err)
	}
	if code != 0 {
		return nil, fmt.Errorf("on the host, in %s: %s", h.dir, strings.TrimSpace(stderr.String()))
	}
	var st hostState
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return nil, fmt.Errorf("release tool %s: bad output %q: %w", args[0], stdout.String(), err)
	}
	return &st, nil
}

// List returns the releases on the host, oldest first, and the current one.
func (h *hostFS) List(ctx context.Context) (*hostState, error) { return h.run(ctx, nil, "list") }

// Upload puts the release files under releases/<id> (never over an
// existing release), owned like the environment's folder.
func (h *hostFS) Upload(ctx context.Context, id string, files map[string]fileData) (*hostState, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		for _, p := range parents(d) {
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
		f := files[name]
		full := path.Join(base, name)
		if err := mkdir(path.Dir(full)); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: full, Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data)),
			Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return h.run(ctx, &buf, "stage", id)
}

func parents(d string) []string {
	var out []string
	for d != "." && d != "/" && d != "" {
		out = append([]string{d}, out...)
		d = path.Dir(d)
	}
	return out
}

// Activate points current at the release, atomically.
func (h *hostFS) Activate(ctx context.Context, id string) (*hostState, error) {
	return h.run(ctx, nil, "activate", id)
}

// Remove deletes a release that is not current.
func (h *hostFS) Remove(ctx context.Context, id string) (*hostState, error) {
	return h.run(ctx, nil, "remove", id)
}

// Prune keeps the newest keep releases plus current and protected ones.
func (h *hostFS) Prune(ctx context.Context, keep int, protected ...string) (*hostState, error) {
	args := append([]string{"prune", fmt.Sprint(keep)}, protected...)
	return h.run(ctx, nil, args...)
}

// Fetch reads the files of releases/<id> from the host.
func (h *hostFS) Fetch(ctx context.Context, id string) (map[string]fileData, error) {
	cid, err := h.container(ctx, []string{"list"})
	if err != nil {
		return nil, err
	}
	defer h.remove(ctx, cid)
	res, err := h.api.CopyFromContainer(ctx, cid, client.CopyFromContainerOptions{SourcePath: "/deploy/releases/" + id + "/."})
	if err != nil {
		return nil, fmt.Errorf("read release %s from %s: %w", id, h.dir, err)
	}
	defer res.Content.Close()
	files := map[string]fileData{}
	tr := tar.NewReader(res.Content)
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
		if name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return nil, fmt.Errorf("read release %s: unexpected path %q", id, hdr.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[name] = fileData{Data: b, Mode: os.FileMode(hdr.Mode).Perm()}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("release %s on %s holds no files", id, h.dir)
	}
	return files, nil
}

// fileData is one file of a release.
type fileData struct {
	Data []byte
	Mode os.FileMode
}

// writeLocal writes a release's files into dir (a fresh folder).
func writeLocal(dir string, files map[string]fileData) error {
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("release file %q leaves its folder", name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, f.Data, mode); err != nil {
			return err
		}
	}
	return nil
}
