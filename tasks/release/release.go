// Package release ships a tested stack to another host: promote renders the
// environment (its own ports, images pinned to the exact tested ones),
// sends the images the host lacks, puts the release folder on the host,
// starts it, waits until it is healthy and runs the checks there; only then
// does the host's `current` link move. On any failure the previous release
// is put back. Rollback and Releases work on the same folders.
//
// Everything that reaches an ssh:// host goes through OpenSSH with the
// environment's known_hosts checked strictly; the compose CLI and the
// docker CLI reach it through a local socket that tunnels over that same
// ssh, never through their own ssh code. Files on the host are written
// through the host's Docker API by a small tool container: no shell
// command is ever composed from catalog values.
//
// On the host, an environment's folder (dir in the catalog) holds:
//
//	releases/<id>/   one folder per release: the rendered deployment
//	current          symlink to releases/<id> of the running release
package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/client"
)

// DefaultEnv is the environment Promote, Rollback and Releases use when
// Options.Env is empty.
const DefaultEnv = "demo"

// Options tune Promote, Rollback and Releases; the zero value works.
type Options struct {
	// Env is the target environment (default "demo").
	Env string
	// Force skips the tested gate of Promote, with a loud warning.
	Force bool
	// Printer gets the step-by-step output (default: stdout).
	Printer *ui.Printer
	// LocalDeployDir is the local deployment folder holding the testAll
	// record (default: the catalog's deploy_dir).
	LocalDeployDir string
	// Now is the clock release ids are taken from (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults(cat *catalog.Catalog) {
	if o.Env == "" {
		o.Env = DefaultEnv
	}
	if o.Printer == nil {
		o.Printer = ui.Stdout()
	}
	if o.LocalDeployDir == "" {
		o.LocalDeployDir = cat.Project.DeployDir
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Result is what a successful Promote did.
type Result struct {
	Env string
	// Release is the id of the new release, now current on the host.
	Release string
	// Previous is the release that was current before ("" for the first).
	Previous string
	// Images maps each service to the pinned image reference shipped.
	Images map[string]string
	// Transfer says which images were sent and how many bytes.
	Transfer *engine.TransferReport
	// Checks is the report of the checks run on the host.
	Checks *check.Report
	// Pruned are the old releases removed from the host.
	Pruned []string
	// Forced is true when the tested gate was skipped.
	Forced   bool
	Duration time.Duration
}

// Release is one release folder on a host.
type Release struct {
	ID string
	// At is when it was made (from its id).
	At time.Time
	// Commit is the git commit of the catalog's repository it was made
	// from ("" when unknown).
	Commit string
	// Current is true for the release the host's current link points at.
	Current bool
}

// Error is a failed Promote or Rollback: what failed, and whether the
// previous release was put back.
type Error struct {
	Env, Release string
	// Step is what failed: "start", "health", "checks", "activate", ...
	Step string
	Err  error
	// Previous is the release that was running before ("" = none).
	Previous string
	// Restored is true when Previous was started again and is healthy;
	// RestoreErr says why not otherwise.
	Restored   bool
	RestoreErr error
	// Removed is true when, with no previous release, the failed stack was
	// taken down.
	Removed bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "release %s on %s failed at %s: %v", e.Release, e.Env, e.Step, e.Err)
	switch {
	case e.Previous != "" && e.Restored:
		fmt.Fprintf(&b, "\nrolled back: the previous release %s is running and healthy again; current still points at it", e.Previous)
	case e.Previous != "":
		fmt.Fprintf(&b, "\nROLLBACK FAILED: the previous release %s could not be restored: %v\nthe host needs attention: try `mage rollback -env=%s`", e.Previous, e.RestoreErr, e.Env)
	case e.Removed:
		b.WriteString("\nthere was no previous release: the failed stack was taken down")
	default:
		fmt.Fprintf(&b, "\nthere was no previous release, and taking the failed stack down failed too: %v", e.RestoreErr)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// releaseID is the UTC time plus the catalog repository's short commit.
func releaseID(ctx context.Context, cat *catalog.Catalog, now time.Time) string {
	id := now.UTC().Format("20060102T150405Z")
	if sha := gitShort(ctx, filepath.Dir(cat.File)); sha != "" {
		id += "-" + sha
	}
	return id
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

func gitShort(ctx context.Context, dir string) string {
	if dir == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(out))
	if !hexSHA.MatchString(s) {
		return ""
	}
	return s
}

var idTime = regexp.MustCompile(`^([0-9]{8}T[0-9]{6}Z)(?:-([0-9a-f]{4,40}))?`)

func parseRelease(id string) Release {
	r := Release{ID: id}
	if m := idTime.FindStringSubmatch(id); m != nil {
		r.At, _ = time.Parse("20060102T150405Z", m[1])
		r.Commit = m[2]
	}
	return r
}

// hostAddr is where this machine reaches the ports the environment
// publishes: the host of its Docker URL, or loopback for a local engine.
func hostAddr(env *catalog.Environment) string {
	if env.Host != "" {
		if u, err := url.Parse(env.Host); err == nil && (u.Scheme == "ssh" || u.Scheme == "tcp") && u.Hostname() != "" {
			return u.Hostname()
		}
	}
	if b := env.Bind; b != "" && b != "0.0.0.0" && b != "::" {
		if ip := net.ParseIP(b); ip != nil {
			return b
		}
	}
	return "127.0.0.1"
}

// target is a connected environment: its engine, how the CLIs reach it
// and its release folder.
type target struct {
	cat       *catalog.Catalog
	env       *catalog.Environment
	p         *ui.Printer
	eng       *engine.Engine
	dockerEnv []string // DOCKER_HOST=... for compose and docker
	proxy     *proxy
	ssh       *sshSession
	fs        *hostFS
	compose   *compose.CLI
}

func (t *target) Close() {
	if t.proxy != nil {
		_ = t.proxy.Close()
	}
	if t.eng != nil {
		_ = t.eng.Close()
	}
	if t.ssh != nil {
		_ = t.ssh.Close()
	}
}

// connect checks the host key (ssh), connects to the engine, starts the
// local tunnel for the CLIs and makes sure the release tool is there.
// Nothing on the host changes.
func connect(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, p *ui.Printer) (*target, error) {
	t := &target{cat: cat, env: env, p: p}
	t0 := time.Now()
	var opts []engine.Option
	if strings.HasPrefix(env.Host, "ssh://") {
		s, err := newSSHSession(cat, env)
		if err != nil {
			return nil, err
		}
		t.ssh = s
		if err := checkHostKey(ctx, cat, env, s.flags); err != nil {
			t.Close()
			return nil, err
		}
		p.Line(ui.OK, "ssh", "host key of %s matches %s", env.Host, knownHostsFile(cat, env))
		opts = append(opts, engine.WithSSHFlags(s.flags), engine.WithPingTimeout(30*time.Second))
	}
	eng, err := engine.Connect(ctx, env.Host, opts...)
	if err != nil {
		t.Close()
		return nil, err
	}
	t.eng = eng
	switch {
	case strings.HasPrefix(env.Host, "ssh://"):
		px, err := startProxy(t.ssh)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.proxy = px
		t.dockerEnv = []string{"DOCKER_HOST=" + px.Host}
	case env.Host != "":
		t.dockerEnv = []string{"DOCKER_HOST=" + env.Host}
	}
	if env.Dir == "" {
		t.Close()
		return nil, fmt.Errorf("environment %s has no dir: say where releases live on its host", env.Name)
	}
	t.fs, err = newHostFS(ctx, eng.API, env.Dir)
	if err != nil {
		t.Close()
		return nil, err
	}
	if env.Engine != catalog.EngineSwarm {
		t.compose, err = compose.Detect(ctx)
		if err != nil {
			t.Close()
			return nil, err
		}
	}
	p.Line(ui.OK, "connect", "%s answers (%s)", eng.Host, ui.Seconds(time.Since(t0)))
	return t, nil
}

// Promote ships the tested stack to the environment opts.Env: see the
// package documentation. It returns a *GateError when the release is not
// what the last testAll passed (and Force is off), a *HostKeyError when
// the host's key is not the one on record, and an *Error when the release
// failed on the host (the previous one is then running again).
func Promote(ctx context.Context, cat *catalog.Catalog, opts Options) (*Result, error) {
	opts.defaults(cat)
	p := opts.Printer
	t0 := time.Now()
	env, err := cat.Env(opts.Env)
	if err != nil {
		return nil, err
	}
	res := &Result{Env: env.Name, Forced: opts.Force, Images: map[string]string{}}
	p.Header("promote %s to %s (%s)", cat.Project.Name, env.Name, displayHost(env))

	local, err := engine.Connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("promote: the local engine holds the tested images: %w", err)
	}
	defer local.Close()

	// 1. The gate: ship only what testAll passed.
	ids := map[string]string{}
	for _, s := range cat.All() {
		id, err := local.ImageID(ctx, cat.ImageRef(s))
		if err != nil {
			return nil, fmt.Errorf("promote: image of %s: %w (run `mage build`)", s.Name, err)
		}
		ids[s.Name] = id
	}
	key, err := record.Key(opts.LocalDeployDir)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	if gerr := checkGate(cat, env.Name, opts.LocalDeployDir, key, ids); gerr != nil {
		if !opts.Force {
			if gerr.(*GateError).Untested() {
				p.Line(ui.Fail, "gate", "not tested: refusing")
			} else {
				p.Line(ui.Fail, "gate", "not what testAll passed: refusing")
			}
			return nil, gerr
		}
		p.Line(ui.Warn, "gate", "%s", p.Colorize(ui.Fail, "FORCED: shipping images and configuration that no passing testAll vouches for:"))
		for _, r := range gerr.(*GateError).Reasons {
			p.Line(ui.Warn, "", "%s", p.Colorize(ui.Warn, "  "+r))
		}
	} else {
		p.Line(ui.OK, "gate", "images and configuration are what the last testAll passed (%s)", filepath.Join(opts.LocalDeployDir, filepath.FromSlash(record.TestFile)))
	}

	// 2. Pin each service to an immutable tag of its tested image.
	for _, s := range cat.All() {
		ref, err := pin(ctx, local, cat, s, ids[s.Name])
		if err != nil {
			return nil, err
		}
		res.Images[s.Name] = ref
	}

	// 3. Connect: host key, engine, tunnel, tool. Nothing changes there yet.
	t, err := connect(ctx, cat, env, p)
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	defer t.Close()
	st, err := t.fs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	res.Previous = st.Current
	res.Release = uniqueID(releaseID(ctx, cat, opts.Now()), st.Releases)

	// 4. Render the release: the environment's ports, the pinned images.
	tree, err := render.Render(cat, env, render.Options{Images: res.Images, Release: res.Release})
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	dir, err := os.MkdirTemp("", "maestro-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	relDir := filepath.Join(dir, res.Release)
	if _, err := render.Write(relDir, tree, render.WriteOptions{}); err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	files, err := readLocal(relDir)
	if err != nil {
		return nil, err
	}
	p.Line(ui.OK, "render", "release %s: %d files, %s ports", res.Release, len(files), env.Ports)

	// 5. Images the host lacks, and the check probe.
	refs := make([]string, 0, len(res.Images))
	for _, s := range cat.All() {
		refs = append(refs, res.Images[s.Name])
	}
	tt := time.Now()
	rep, err := engine.Transfer(ctx, local, t.eng, refs, p)
	res.Transfer = rep
	if err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	if len(rep.Sent) == 0 {
		p.Line(ui.OK, "images", "nothing to send: all %d already on the host (%s)", len(rep.Present), ui.Seconds(time.Since(tt)))
	}
	if probe, err := check.EnsureProbe(ctx, t.eng.API); err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	} else {
		p.Line(ui.OK, "probe", "%s on %s", probe, t.eng.Host)
	}

	// 6. The release folder on the host; current does not move yet.
	tu := time.Now()
	if _, err := t.fs.Upload(ctx, res.Release, files); err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	p.Line(ui.OK, "upload", "%s/releases/%s (%s)", env.Dir, res.Release, ui.Seconds(time.Since(tu)))

	// 7. Start, wait, check; put the previous release back on failure.
	report, step, err := t.start(ctx, relDir)
	res.Checks = report
	if err != nil {
		return res, t.recover(ctx, res.Release, res.Previous, step, err)
	}
	if _, err := t.fs.Activate(ctx, res.Release); err != nil {
		return res, t.recover(ctx, res.Release, res.Previous, "activate", err)
	}
	p.Line(ui.OK, "current", "%s/current -> releases/%s", env.Dir, res.Release)

	// 8. Prune: never the current or the previous release.
	protect := []string{res.Release}
	if res.Previous != "" {
		protect = append(protect, res.Previous)
	}
	if pst, err := t.fs.Prune(ctx, env.KeepReleases, protect...); err != nil {
		p.Line(ui.Warn, "prune", "%v", err)
	} else if len(pst.Removed) > 0 {
		res.Pruned = pst.Removed
		p.Line(ui.OK, "prune", "removed %s (keeping %d)", strings.Join(pst.Removed, ", "), env.KeepReleases)
	}
	res.Duration = time.Since(t0)
	p.Line(ui.OK, "promote", "%s is live on %s in %s: %d image(s) sent, %s", res.Release, env.Name,
		ui.Seconds(res.Duration), len(rep.Sent), ui.Bytes(rep.Bytes))
	return res, nil
}

func displayHost(env *catalog.Environment) string {
	if env.Host == "" {
		return "local engine"
	}
	return env.Host
}

func uniqueID(id string, existing []string) string {
	have := map[string]bool{}
	for _, e := range existing {
		have[e] = true
	}
	out := id
	for n := 2; have[out]; n++ {
		out = fmt.Sprintf("%s.%d", id, n)
	}
	return out
}

// pin returns an immutable reference of the tested image: the content-hash
// tag build gave it, or else a release tag made for it here.
func pin(ctx context.Context, local *engine.Engine, cat *catalog.Catalog, s *catalog.Service, id string) (string, error) {
	repo := cat.ImageRepo(s)
	img, err := local.API.ImageInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("promote: image of %s: %w", s.Name, err)
	}
	var tags []string
	for _, t := range img.RepoTags {
		if tag, ok := strings.CutPrefix(t, repo+":"); ok && (hashTag.MatchString(tag) || strings.HasPrefix(tag, "rel-")) {
			tags = append(tags, t)
		}
	}
	sort.Slice(tags, func(i, j int) bool {
		return hashTag.MatchString(tags[i][len(repo)+1:]) && !hashTag.MatchString(tags[j][len(repo)+1:])
	})
	if len(tags) > 0 {
		return tags[0], nil
	}
	ref := repo + ":rel-" + engine.ShortID(id)
	if _, err := local.API.ImageTag(ctx, imageTagOptions(id, ref)); err != nil {
		return "", fmt.Errorf("promote: tag %s: %w", ref, err)
	}
	return ref, nil
}

var hashTag = regexp.MustCompile(`^[0-9a-f]{12}$`)

// readLocal reads a rendered release folder back: what is uploaded is
// byte for byte what compose runs from here.
func readLocal(dir string) (map[string]fileData, error) {
	files := map[string]fileData{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = fileData{Data: b, Mode: info.Mode().Perm()}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read release %s: %w", dir, err)
	}
	return files, nil
}

// start runs the release in dir on the host and proves it: up, healthy,
// checks green. step names what failed.
func (t *target) start(ctx context.Context, dir string) (*check.Report, string, error) {
	if t.env.Engine == catalog.EngineSwarm {
		return t.startStack(ctx, dir)
	}
	ts := time.Now()
	files := []string{render.ComposeFile}
	t.p.Line(ui.Run, "start", "%s up -d on %s", t.compose, t.eng.Host)
	out, err := compose.Exec(ctx, dir, t.dockerEnv, t.compose.UpStackArgs(t.cat.Project.Name, files))
	t.dim(out)
	if err != nil {
		return nil, "start", err
	}
	t.p.Line(ui.OK, "start", "containers started in %s", ui.Seconds(time.Since(ts)))
	if err := t.waitHealthy(ctx); err != nil {
		return nil, "health", err
	}
	report, err := t.checks(ctx)
	if err != nil {
		return report, "checks", err
	}
	return report, "", nil
}

// dim shows what compose printed, quietly.
func (t *target) dim(out []byte) {
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			t.p.Dim("    %s", l)
		}
	}
}

func (t *target) waitHealthy(ctx context.Context) error {
	_, err := health.Wait(ctx, &health.Compose{Engine: t.eng, Project: t.cat.Project.Name},
		health.Targets(t.cat, t.env, hostAddr(t.env)),
		health.Options{Deadline: t.env.HealthDeadline(), Printer: t.p, Redact: check.Redactor(t.cat)})
	return err
}

func (t *target) checks(ctx context.Context) (*check.Report, error) {
	return check.Run(ctx, t.cat, check.Target{Env: t.env, Project: t.cat.Project.Name, HostAddr: hostAddr(t.env), API: t.eng.API},
		check.Options{Printer: t.p})
}

// recover puts the previous release back after release id failed at step
// (or, with none, takes the failed stack down) and removes the failed
// release's folder; current is left as it was.
func (t *target) recover(ctx context.Context, id, previous, step string, cause error) error {
	// The caller's context may be what ended the release: recovery still runs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.env.HealthDeadline()+2*time.Minute)
	defer cancel()
	e := &Error{Env: t.env.Name, Release: id, Step: step, Err: cause, Previous: previous}
	t.p.Line(ui.Fail, step, "release %s failed: %v", id, firstLine(cause))
	if previous != "" {
		t.p.Line(ui.Run, "rollback", "putting %s back", previous)
		if err := t.restore(ctx, previous); err != nil {
			e.RestoreErr = err
			t.p.Line(ui.Fail, "rollback", "%s could not be restored: %v", previous, firstLine(err))
		} else {
			e.Restored = true
			t.p.Line(ui.OK, "rollback", "%s is running and healthy again", previous)
		}
	} else {
		if err := t.down(ctx, id); err != nil {
			e.RestoreErr = err
			t.p.Line(ui.Fail, "down", "taking the failed stack down failed: %v", firstLine(err))
		} else {
			e.Removed = true
			t.p.Line(ui.OK, "down", "no previous release: the failed stack was taken down")
		}
	}
	if _, err := t.fs.Remove(ctx, id); err != nil {
		t.p.Line(ui.Warn, "cleanup", "failed release folder %s left on the host: %v", id, err)
	}
	return e
}

// restore starts release id again from its folder on the host and waits
// until it is healthy.
func (t *target) restore(ctx context.Context, id string) error {
	dir, cleanup, err := t.fetch(ctx, id)
	if err != nil {
		return err
	}
	defer cleanup()
	if t.env.Engine == catalog.EngineSwarm {
		if err := t.deployStack(ctx, dir); err != nil {
			return err
		}
		return t.waitStack(ctx)
	}
	out, err := compose.Exec(ctx, dir, t.dockerEnv, t.compose.UpStackArgs(t.cat.Project.Name, []string{render.ComposeFile}))
	t.dim(out)
	if err != nil {
		return err
	}
	return t.waitHealthy(ctx)
}

// down removes the stack of a failed first release.
func (t *target) down(ctx context.Context, id string) error {
	if t.env.Engine == catalog.EngineSwarm {
		return t.removeStack(ctx)
	}
	dir, cleanup, err := t.fetch(ctx, id)
	if err != nil {
		return err
	}
	defer cleanup()
	_, err = compose.Exec(ctx, dir, t.dockerEnv, t.compose.DownArgs(t.cat.Project.Name, []string{render.ComposeFile}, false))
	return err
}

// fetch copies release id from the host into a local temporary folder.
func (t *target) fetch(ctx context.Context, id string) (string, func(), error) {
	files, err := t.fs.Fetch(ctx, id)
	if err != nil {
		return "", func() {}, err
	}
	dir, err := os.MkdirTemp("", "maestro-release-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := writeLocal(dir, files); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return dir, cleanup, nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Rollback starts the release before the current one on the host of
// opts.Env, waits until it is healthy and checks it, then moves current
// to it. When it fails, the release that was current is started again.
func Rollback(ctx context.Context, cat *catalog.Catalog, opts Options) error {
	opts.defaults(cat)
	p := opts.Printer
	t0 := time.Now()
	env, err := cat.Env(opts.Env)
	if err != nil {
		return err
	}
	p.Header("rollback %s on %s (%s)", cat.Project.Name, env.Name, displayHost(env))
	t, err := connect(ctx, cat, env, p)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	defer t.Close()
	st, err := t.fs.List(ctx)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	if st.Current == "" {
		return fmt.Errorf("rollback %s: no current release in %s on %s: nothing to roll back from (run `mage promote -env=%s` first)",
			env.Name, env.Dir, displayHost(env), env.Name)
	}
	prev := ""
	for _, id := range st.Releases {
		if id < st.Current {
			prev = id
		}
	}
	if prev == "" {
		return fmt.Errorf("rollback %s: %s is the oldest release on the host (%s): there is none before it",
			env.Name, st.Current, strings.Join(st.Releases, ", "))
	}
	p.Line(ui.Info, "rollback", "from %s to %s", st.Current, prev)
	dir, cleanup, err := t.fetch(ctx, prev)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	defer cleanup()
	if _, step, err := t.start(ctx, dir); err != nil {
		return t.recoverRollback(ctx, prev, st.Current, step, err)
	}
	if _, err := t.fs.Activate(ctx, prev); err != nil {
		return t.recoverRollback(ctx, prev, st.Current, "activate", err)
	}
	p.Line(ui.OK, "current", "%s/current -> releases/%s", env.Dir, prev)
	p.Line(ui.OK, "rollback", "%s is live on %s again in %s", prev, env.Name, ui.Seconds(time.Since(t0)))
	return nil
}

func (t *target) recoverRollback(ctx context.Context, id, current, step string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.env.HealthDeadline()+2*time.Minute)
	defer cancel()
	e := &Error{Env: t.env.Name, Release: id, Step: step, Err: cause, Previous: current}
	t.p.Line(ui.Fail, step, "rollback to %s failed: %v", id, firstLine(cause))
	if err := t.restore(ctx, current); err != nil {
		e.RestoreErr = err
	} else {
		e.Restored = true
		t.p.Line(ui.OK, "restore", "%s is running and healthy again", current)
	}
	return e
}

// Releases lists the releases on the host of opts.Env, oldest first, with
// the current one marked, and prints them as a table.
func Releases(ctx context.Context, cat *catalog.Catalog, opts Options) ([]Release, error) {
	opts.defaults(cat)
	env, err := cat.Env(opts.Env)
	if err != nil {
		return nil, err
	}
	t, err := connect(ctx, cat, env, ui.Plain(io.Discard))
	if err != nil {
		return nil, fmt.Errorf("releases %s: %w", env.Name, err)
	}
	defer t.Close()
	st, err := t.fs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("releases %s: %w", env.Name, err)
	}
	out := make([]Release, 0, len(st.Releases))
	var rows [][]string
	for _, id := range st.Releases {
		r := parseRelease(id)
		r.Current = id == st.Current
		out = append(out, r)
		mark := ""
		if r.Current {
			mark = opts.Printer.Colorize(ui.OK, "current")
		}
		at := ""
		if !r.At.IsZero() {
			at = r.At.Local().Format("2006-01-02 15:04:05")
		}
		rows = append(rows, []string{id, at, r.Commit, mark})
	}
	opts.Printer.Header("releases of %s on %s (%s:%s)", cat.Project.Name, env.Name, displayHost(env), env.Dir)
	if len(rows) == 0 {
		opts.Printer.Line(ui.Info, "", "no releases yet: `mage promote -env=%s` makes the first", env.Name)
	} else {
		opts.Printer.Table([]string{"RELEASE", "MADE", "COMMIT", ""}, rows)
	}
	return out, nil
}

var errNoStack = errors.New("no stack file in the release: render it for an environment with engine = \"swarm\"")

func imageTagOptions(src, target string) client.ImageTagOptions {
	return client.ImageTagOptions{Source: src, Target: target}
}
