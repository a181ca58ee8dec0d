// Package release ships a tested stack to another host and keeps it
// running there: promote renders the environment (its own ports, images
// pinned to the exact tested ones, a reverse proxy publishing the ports),
// sends the images the host lacks, puts the release folder on the host,
// and has the environment's runtime converge to it: only the services
// whose image or configuration changed are replaced, each new container
// beside the old one until it is healthy and takes the traffic. Then the
// checks run there, and only then does the host's `current` link move. On
// any failure the previous release is put back the same way. Rollback,
// Releases and Plan work on the same folders.
//
// Every release shipped is also kept here (record.SaveRelease): a rollback
// runs exactly what was shipped, and a host whose copy differs is refused.
//
// Everything that reaches an ssh:// host goes through one OpenSSH
// connection with the environment's known_hosts checked strictly; the
// compose and docker CLIs reach it through a local socket over that
// connection, with an environment of nothing but PATH, HOME and that
// socket. Files on the host are written through the host's Docker API by
// an agent container (package hostfs).
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
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/internal/interrupt"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/proxy"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/secrets"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// DefaultEnv is the environment Promote, Rollback and Releases use when
// Options.Env is empty.
const DefaultEnv = "demo"

// Options tune Promote, Rollback, Releases and Plan; the zero value works.
type Options struct {
	// Env is the target environment (default "demo").
	Env string
	// Force skips the tested gate of Promote, with a loud warning.
	Force bool
	// Wait makes Promote and Rollback wait for the environment's lock
	// when another promotion or rollback holds it, instead of failing
	// at once with a *hostfs.BusyError naming the holder.
	Wait bool
	// Printer gets the step-by-step output (default: stdout).
	Printer *ui.Printer
	// LocalDeployDir is the local deployment folder holding the testAll
	// record and the records of shipped releases (default: the catalog's
	// deploy_dir).
	LocalDeployDir string
	// Now is the clock release ids are taken from (default time.Now).
	Now func() time.Time
	// Release, for Rollback, is the kept release to put live, forward or
	// back (promote -release); "" is the one before the current.
	Release string
}

// ActionRelease is the audit log's action of promote -release: a kept
// release put live again, exactly as shipped.
const ActionRelease = "promote -release"

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
	// Changes is what the runtime did to each service.
	Changes *runtime.Plan
	// Swarm is what a swarm environment's promote saw of its nodes: what
	// each was sent, where the tasks run (nodes.go); nil otherwise.
	Swarm *SwarmReport
	// Checks is the report of the checks run on the host.
	Checks *check.Report
	// Pruned are the old releases removed from the host.
	Pruned []string
	// Forced is true when the tested gate was skipped.
	Forced   bool
	Duration time.Duration
	// live: the release became current (Ctrl-C after it leaves it so).
	live bool
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
	// Recorded is true when this machine holds the record a rollback to
	// it needs.
	Recorded bool
}

// Error is a failed Promote or Rollback: what failed, and whether the
// previous release was put back.
type Error struct {
	Env, Release string
	// Step is what failed: "start", "checks", "activate", ...
	Step string
	Err  error
	// Previous is the release that was running before ("" = none).
	Previous string
	// Restored is true when Previous runs and is healthy again;
	// RestoreErr says why not otherwise.
	Restored   bool
	RestoreErr error
	// Removed is true when, with no previous release, what the release
	// started was taken down.
	Removed bool
	// Interrupted is true when Ctrl-C ended it (interrupt.Context).
	Interrupted bool
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Interrupted {
		fmt.Fprintf(&b, "release %s on %s %v at %s", e.Release, e.Env, interrupt.ErrInterrupted, e.Step)
	} else {
		fmt.Fprintf(&b, "release %s on %s failed at %s: %v", e.Release, e.Env, e.Step, e.Err)
	}
	switch {
	case e.Previous != "" && e.Restored:
		fmt.Fprintf(&b, "\nrolled back: the previous release %s is running and healthy again; current still points at it", e.Previous)
	case e.Previous != "":
		fmt.Fprintf(&b, "\nROLLBACK FAILED: the previous release %s could not be restored: %v\nthe host needs attention: try `mage rollback -env=%s`", e.Previous, e.RestoreErr, e.Env)
	case e.Removed:
		b.WriteString("\nthere was no previous release: what this release started was taken down")
	default:
		fmt.Fprintf(&b, "\nthere was no previous release, and taking down what this release started failed too: %v", e.RestoreErr)
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
// tag build gave it, or else a release tag, made here unless dryRun.
func pin(ctx context.Context, local *engine.Engine, cat *catalog.Catalog, s *catalog.Service, id string, dryRun bool) (string, error) {
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
	if dryRun {
		return ref, nil
	}
	if _, err := local.API.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: ref}); err != nil {
		return "", fmt.Errorf("promote: tag %s: %w", ref, err)
	}
	return ref, nil
}

var hashTag = regexp.MustCompile(`^[0-9a-f]{12}$`)

// pinnedName names the image of a pinned reference as build does: by its
// content-hash tag, else by its short ID.
func pinnedName(ref, id string) string {
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && hashTag.MatchString(ref[i+1:]) {
		return ref[i+1:]
	}
	return engine.ShortID(id)
}

// renderOptions are how a release of env is rendered: pinned images, its
// ports behind the proxy, secrets in the config hash by keyed digest.
func renderOptions(images map[string]string, id string, key []byte) render.Options {
	return render.Options{Images: images, Release: id, Proxied: true, SecretKey: key}
}

// spec is what the runtime needs of a release made from the catalog.
func spec(cat *catalog.Catalog, env *catalog.Environment, rec *record.Release, dir string, key []byte, p *ui.Printer) (*runtime.Release, error) {
	rel := &runtime.Release{ID: rec.ID, Project: cat.Project.Name, Cat: cat, Env: env, Dir: dir,
		HostAddr: hostAddr(env), Printer: p, Redact: check.Redactor(cat)}
	// The release's own .env (kept here) holds its secrets' values, which
	// may no longer be the catalog's: they are hidden in what is printed
	// too, and go to the runtime as Docker secrets, named by their values
	// (a swarm mounts them; compose reads the .env).
	var envVars map[string]string
	if dir != "" {
		var err error
		if envVars, err = dotenv.Read(filepath.Join(dir, render.EnvFile)); err != nil {
			return nil, fmt.Errorf("release %s: %w", rec.ID, err)
		}
	}
	extra := recordedSecrets(envVars)
	for _, s := range rec.Services {
		rel.Services = append(rel.Services, runtime.Service{Name: s.Name, Image: rec.Images[s.Name], ImageID: rec.ImageIDs[s.Name],
			ImageName:  pinnedName(rec.Images[s.Name], rec.ImageIDs[s.Name]),
			ConfigHash: rec.Hashes[s.Name], ContainerPort: s.ContainerPort, HostPort: s.HostPort, Stateful: s.Stateful,
			DependsOn: s.DependsOn, OneShot: s.OneShot})
		for _, k := range s.Secrets {
			v, ok := envVars[render.SecretVar(s.Name, k)]
			if !ok {
				return nil, fmt.Errorf("release %s: no value of %s's secret %s in its %s", rec.ID, s.Name, k, render.EnvFile)
			}
			rel.Secrets = append(rel.Secrets, runtime.Secret{Name: render.SwarmSecretName(cat.Project.Name, s.Name, k, v, key), Value: []byte(v)})
		}
	}
	rel.Redact = check.Redactor(cat, extra...)
	return rel, nil
}

// recordedSecrets are the secrets' values in a release's .env variables.
func recordedSecrets(envVars map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(envVars)) {
		if strings.HasPrefix(k, render.SecretVarPrefix) {
			out = append(out, envVars[k])
		}
	}
	return out
}

// services records, in start order, what the runtime needs of each of the
// catalog's services in env.
func services(cat *catalog.Catalog, env *catalog.Environment) []record.Service {
	var out []record.Service
	for _, s := range cat.All() {
		rs := record.Service{Name: s.Name, ContainerPort: s.Port, Stateful: len(s.Volumes) > 0, DependsOn: s.DependsOn, OneShot: cat.OneShot(s.Name),
			Secrets: slices.Sorted(maps.Keys(s.Secrets))}
		if port, ok := s.HostPort(env.Ports); ok {
			rs.HostPort = port
		}
		out = append(out, rs)
	}
	return out
}

// readDir reads a rendered release folder back: what is uploaded is byte
// for byte what the CLIs run from here.
func readDir(dir string) (map[string][]byte, map[string]fs.FileMode, error) {
	files, modes := map[string][]byte{}, map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
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
		files[filepath.ToSlash(rel)], modes[filepath.ToSlash(rel)] = b, info.Mode().Perm()
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read release %s: %w", dir, err)
	}
	return files, modes, nil
}

// toHost are the files of a release that its runtime ships to the host.
func toHost(rt runtime.Runtime, files map[string][]byte, modes map[string]fs.FileMode) map[string]hostfs.File {
	out := map[string]hostfs.File{}
	for name, b := range files {
		if rt.Ships(name) {
			out[name] = hostfs.File{Data: b, Mode: modes[name]}
		}
	}
	return out
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
	// The environment's own secret values, before anything else: one that
	// cannot be found stops the promote with nothing changed.
	if _, err := secrets.Resolve(ctx, cat, env); err != nil {
		return nil, err
	}

	local, err := engine.Connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("promote: the local engine holds the tested images: %w", err)
	}
	defer local.Close()

	// 1. The gate: ship only what testAll passed.
	ids, err := gate(ctx, local, cat, env, opts.LocalDeployDir)
	var gerr *GateError
	switch {
	case errors.As(err, &gerr) && !opts.Force:
		if gerr.Untested() {
			p.Line(ui.Fail, "gate", "not tested: refusing")
		} else {
			p.Line(ui.Fail, "gate", "not what testAll passed: refusing")
		}
		return nil, gerr
	case gerr != nil:
		p.Line(ui.Warn, "gate", "%s", p.Colorize(ui.Fail, "FORCED: shipping images and configuration that no passing testAll vouches for:"))
		for _, r := range gerr.Reasons {
			p.Line(ui.Warn, "", "%s", p.Colorize(ui.Warn, "  "+r))
		}
	case err != nil:
		return nil, err
	default:
		p.Line(ui.OK, "gate", "images and configuration are what the last testAll passed (%s)", filepath.Join(opts.LocalDeployDir, filepath.FromSlash(record.TestFile)))
	}
	key, err := record.Key(opts.LocalDeployDir)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}

	// 2. Pin each service to an immutable tag of its tested image.
	for _, s := range cat.All() {
		ref, err := pin(ctx, local, cat, s, ids[s.Name], false)
		if err != nil {
			return nil, err
		}
		res.Images[s.Name] = ref
	}

	// Every value must be one the release's files can carry, before
	// anything reaches the host.
	if err := render.Check(cat, env, renderOptions(res.Images, "", key)); err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}

	// 3. Connect: host key, engine, tunnel, agent. Nothing changes there yet.
	t, err := connect(ctx, cat, env, p)
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	defer t.Close()
	lock, err := t.acquire(ctx, "promote", opts.Wait)
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	defer lock.Release()
	audit := newAudit(ctx, cat, env, "promote", opts)
	t.tookOver(ctx, lock, audit)
	audit.Images = ids
	if err := crashpoint.Reached(ctx, "promote:locked"); err != nil {
		return nil, err
	}
	// A swarm's nodes: named in the catalog and reached over SSH, or down.
	nodes, err := t.swarmNodes(ctx) // nodes.go
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	defer nodes.Close()
	res.Swarm = nodes.Report()
	res, err = t.promote(ctx, cat, env, opts, key, res, ids, local, nodes, t0)
	err = interrupted(ctx, env, err, res.live)
	audit.Release, audit.Previous = res.Release, res.Previous
	audit.finish(err, t0, check.Redactor(cat), res.live)
	t.audit(ctx, audit)
	return res, err
}

// interrupted says plainly how a Ctrl-C left the host, when err is what
// it ended with: a failed release's error says so itself (Error); before
// the upload nothing running changed, after the activation the release
// is live.
func interrupted(ctx context.Context, env *catalog.Environment, err error, live bool) error {
	var e *Error
	switch {
	case err == nil || !interrupt.Interrupted(ctx) || errors.As(err, &e):
		return err
	case live:
		return fmt.Errorf("%w on %s after the release went live (it is current); what was left undone: %s", interrupt.ErrInterrupted, env.Name, firstLine(err))
	}
	return fmt.Errorf("%w on %s before anything running there changed: %s", interrupt.ErrInterrupted, env.Name, firstLine(err))
}

// promote is what Promote does on the host once it holds its lock.
func (t *target) promote(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, opts Options, key []byte,
	res *Result, ids map[string]string, local *engine.Engine, nodes *swarmNodes, t0 time.Time) (*Result, error) {
	p := opts.Printer
	st, err := t.fs.List(ctx)
	if err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	res.Previous = st.Current
	res.Release = uniqueID(releaseID(ctx, cat, opts.Now()), st.Releases)

	// 4. Render the release and keep its record here: the environment's
	// ports behind the proxy, the pinned images.
	rec, dir, err := makeRelease(ctx, cat, env, opts, key, res.Release, res.Previous, res.Images, ids)
	if err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	files, modes, err := readDir(dir)
	if err != nil {
		return res, err
	}
	p.Line(ui.OK, "render", "release %s: %d files, %s ports", res.Release, len(files), env.Ports)

	// 5. Images the host lacks; the proxy and the checks' probe.
	refs := make([]string, 0, len(res.Images))
	for _, s := range cat.All() {
		refs = append(refs, res.Images[s.Name])
	}
	tt := time.Now()
	rep, err := nodes.transfer(ctx, local, t.eng, refs, p) // every node of a swarm
	res.Transfer = rep
	if err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	if len(rep.Sent) == 0 {
		p.Line(ui.OK, "images", "nothing to send: all %d already on the host (%s)", len(rep.Present), ui.Seconds(time.Since(tt)))
	}
	if err := crashpoint.Reached(ctx, "promote:transferred"); err != nil {
		return res, err
	}
	if _, err := proxy.EnsureImage(ctx, t.eng.API); err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	if _, err := check.EnsureProbe(ctx, t.eng.API); err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}

	// 6. The release folder on the host; current does not move yet.
	tu := time.Now()
	if _, err := t.fs.Upload(ctx, res.Release, toHost(t.rt, files, modes)); err != nil {
		return res, fmt.Errorf("promote %s: %w", env.Name, err)
	}
	p.Line(ui.OK, "upload", "%s/releases/%s (%s)", env.Dir, res.Release, ui.Seconds(time.Since(tu)))
	if err := crashpoint.Reached(ctx, "promote:uploaded"); err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "upload", err, nil)
	}

	// 7. Converge, check; put the previous release back on failure.
	rel, err := spec(cat, env, rec, dir, key, p)
	if err != nil {
		return res, err
	}
	res.Changes, err = t.rt.Apply(ctx, rel)
	if err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "start", err, res.Changes)
	}
	p.Line(ui.OK, "apply", "%s (%s)", res.Changes.Summary(), ui.Seconds(res.Changes.Took))
	nodes.spread(ctx, t.eng.API, cat, p)
	if err := crashpoint.Reached(ctx, "promote:applied"); err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "checks", err, res.Changes)
	}
	report, err := t.checks(ctx)
	res.Checks = report
	if err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "checks", err, res.Changes)
	}
	if err := crashpoint.Reached(ctx, "promote:checked"); err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "activate", err, res.Changes)
	}
	if _, err := t.fs.Activate(ctx, res.Release); err != nil {
		return res, t.recover(ctx, opts, res.Release, res.Previous, "activate", err, res.Changes)
	}
	res.live = true
	if err := crashpoint.Reached(ctx, "promote:activated"); err != nil {
		return res, err
	}
	p.Line(ui.OK, "current", "%s/current -> releases/%s", env.Dir, res.Release)

	// 8. Prune: never the current or the previous release.
	protect := []string{res.Release}
	if res.Previous != "" {
		protect = append(protect, res.Previous)
	}
	if pst, err := t.fs.Prune(ctx, env.KeepReleases, protect...); err != nil {
		p.Line(ui.Warn, "prune", "%v", err)
	} else {
		if len(pst.Removed) > 0 {
			res.Pruned = pst.Removed
			p.Line(ui.OK, "prune", "removed %s (keeping %d)", strings.Join(pst.Removed, ", "), env.KeepReleases)
			// Images go with the last release that used them.
			if _, err := t.pruneImages(ctx, opts, nodes); err != nil {
				p.Line(ui.Warn, "prune", "images: %v", err)
			}
		}
		record.PruneReleases(opts.LocalDeployDir, env.Name, pst.Releases)
	}
	res.Duration = time.Since(t0)
	p.Line(ui.OK, "promote", "%s is live on %s in %s: %s; %d image(s) sent, %s", res.Release, env.Name,
		ui.Seconds(res.Duration), res.Changes.Summary(), len(rep.Sent), ui.Bytes(rep.Bytes))
	return res, nil
}

// makeRelease renders release id of env and keeps its record in the local
// deployment folder. It returns the record and the folder of its files,
// which is what the runtime runs from.
func makeRelease(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, opts Options, key []byte,
	id, previous string, images, imageIDs map[string]string) (*record.Release, string, error) {
	ropts := renderOptions(images, id, key)
	tree, err := render.Render(cat, env, ropts)
	if err != nil {
		return nil, "", err
	}
	hashes, err := render.ConfigHashes(cat, env, ropts)
	if err != nil {
		return nil, "", err
	}
	files, modes := map[string][]byte{}, map[string]fs.FileMode{}
	for _, f := range tree {
		files[f.Path], modes[f.Path] = f.Data, f.Mode
	}
	rec := record.Release{ID: id, Env: env.Name, Project: cat.Project.Name, Previous: previous,
		Images: images, ImageIDs: imageIDs, Hashes: hashes, Config: record.Views(cat, key),
		Services: services(cat, env), At: opts.Now().UTC()}
	dir, err := record.SaveRelease(opts.LocalDeployDir, rec, files, modes)
	if err != nil {
		return nil, "", err
	}
	saved, _, err := record.LoadRelease(opts.LocalDeployDir, env.Name, id)
	if err != nil {
		return nil, "", err
	}
	return saved, dir, nil
}

// acquire takes the environment's lock for command, waiting for it when
// wait is set and another holds it.
func (t *target) acquire(ctx context.Context, command string, wait bool) (*hostfs.Lock, error) {
	announced := false
	for {
		l, err := t.fs.Lock(ctx, hostfs.Me(command))
		var busy *hostfs.BusyError
		switch {
		case err == nil:
			if l.TookOver != nil {
				t.p.Line(ui.Warn, "lock", "took over the lock of %s: its session is gone", l.TookOver)
			}
			if err := t.alone(ctx); err != nil {
				_ = l.Release()
				return nil, err
			}
			return l, nil
		case !errors.As(err, &busy) || !wait:
			return nil, err
		case !announced:
			t.p.Line(ui.Run, "lock", "waiting for %s", busy.Holder)
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the lock of %s: %w", t.env.Dir, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// alone refuses a host where the project runs for another environment: a
// compose project, a swarm stack, the proxy and its edge network are named
// by the project alone, so this promotion or rollback would replace that
// environment's containers, while each environment's lock (in its own dir)
// keeps neither from the other. The engine is asked, not the catalog: two
// spellings of a host (a name and an address, two users) are one engine.
func (t *target) alone(ctx context.Context) error {
	project := t.cat.Project.Name
	others := map[string]int{}
	cs, err := t.eng.API.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", labels.Environment)})
	if err != nil {
		return fmt.Errorf("containers on %s: %w", t.eng.Host, err)
	}
	for _, c := range cs.Items {
		if e := c.Labels[labels.Environment]; e != t.env.Name && (c.Labels[labels.ComposeProject] == project || c.Labels[labels.StackNamespace] == project) {
			others[ui.Clean(e)]++
		}
	}
	// Services on other nodes of a swarm; an engine that is no swarm
	// manager has none.
	if svcs, err := t.eng.API.ServiceList(ctx, client.ServiceListOptions{
		Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+project)}); err == nil {
		for _, sv := range svcs.Items {
			if cs := sv.Spec.TaskTemplate.ContainerSpec; cs != nil && cs.Labels[labels.Environment] != t.env.Name {
				others[ui.Clean(cs.Labels[labels.Environment])]++
			}
		}
	}
	if len(others) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(others))
	n := 0
	for _, c := range others {
		n += c
	}
	return fmt.Errorf("%s:%d: environments.%s.host: %s already runs project %s for environment %s (%d containers or services labelled %s): "+
		"environments on one engine share the compose project, the swarm stack, the proxy and its edge network, so %s would replace them; "+
		"give %s a host of its own, or take the other environment down there first (`docker compose -p %s down`, `docker stack rm %s`)",
		t.cat.File, t.env.Line, t.env.Name, t.eng.Host, project, strings.Join(names, ", "), n, labels.Environment,
		t.env.Name, t.env.Name, project, project)
}

// recover puts the previous release back after release id failed at step
// (or, with none, takes down what the release started) and removes the
// failed release's folder; current is left as it was.
func (t *target) recover(ctx context.Context, opts Options, id, previous, step string, cause error, applied *runtime.Plan) error {
	e := &Error{Env: t.env.Name, Release: id, Step: step, Err: cause, Previous: previous, Interrupted: interrupt.Interrupted(ctx)}
	// The caller's context may be what ended the release: recovery still runs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.env.HealthDeadline()+2*time.Minute)
	defer cancel()
	if e.Interrupted {
		t.p.Line(ui.Warn, step, "release %s %v: putting back what it changed", id, interrupt.ErrInterrupted)
	} else {
		t.p.Line(ui.Fail, step, "release %s failed: %v", id, firstLine(cause))
	}
	if previous != "" {
		t.p.Line(ui.Run, "rollback", "putting %s back", previous)
		if err := t.restore(ctx, opts, previous, false); err != nil {
			e.RestoreErr = err
			t.p.Line(ui.Fail, "rollback", "%s could not be restored: %v", previous, firstLine(err))
		} else {
			e.Restored = true
			t.p.Line(ui.OK, "rollback", "%s is running and healthy again", previous)
		}
	} else {
		if err := t.takeDown(ctx, applied); err != nil {
			e.RestoreErr = err
			t.p.Line(ui.Fail, "down", "taking down what the release started failed: %v", firstLine(err))
		} else {
			e.Removed = true
			t.p.Line(ui.OK, "down", "no previous release: what this release started was taken down")
		}
	}
	if _, err := t.fs.Remove(ctx, id); err != nil {
		t.p.Line(ui.Warn, "cleanup", "failed release folder %s left on the host: %v", id, err)
	}
	return e
}

// takeDown removes what a failed first release started, and only that:
// containers the host ran before (by hand, say) are left alone.
func (t *target) takeDown(ctx context.Context, applied *runtime.Plan) error {
	if applied == nil {
		return nil
	}
	var errs []error
	for _, ch := range applied.Changes {
		if ch.Action != runtime.Start {
			continue
		}
		for _, id := range ch.New {
			if _, err := t.eng.API.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !engine.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// restore converges the host back to release id, from its local record.
// With verify, the host's copy must be what was shipped, or nothing is
// done; without, a differing copy is only reported (recovery must run).
func (t *target) restore(ctx context.Context, opts Options, id string, verify bool) error {
	rec, dir, err := record.LoadRelease(opts.LocalDeployDir, t.env.Name, id)
	if err != nil {
		return fmt.Errorf("%w: a rollback runs only what was shipped from this machine; promote again instead", err)
	}
	files, err := t.fs.Fetch(ctx, id)
	if err != nil {
		return err
	}
	got := map[string][]byte{}
	for name, f := range files {
		got[name] = f.Data
	}
	if err := rec.Verify(got, func(name string) bool { return !t.rt.Ships(name) }); err != nil {
		if verify {
			return err
		}
		t.p.Line(ui.Warn, "verify", "%v", firstLine(err))
	}
	key, err := record.Key(opts.LocalDeployDir)
	if err != nil {
		return err
	}
	rel, err := spec(t.cat, t.env, rec, dir, key, t.p)
	if err != nil {
		return err
	}
	pl, err := t.rt.Apply(ctx, rel)
	if err != nil {
		return err
	}
	t.p.Line(ui.OK, "apply", "%s (%s)", pl.Summary(), ui.Seconds(pl.Took))
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Rollback puts the release before the current one on the host of
// opts.Env back, exactly as it was shipped (the host's copy must match this
// machine's record), checks it, then moves current to it. When it fails,
// the release that was current is put back.
func Rollback(ctx context.Context, cat *catalog.Catalog, opts Options) error {
	opts.defaults(cat)
	p := opts.Printer
	t0 := time.Now()
	env, err := cat.Env(opts.Env)
	if err != nil {
		return err
	}
	action := "rollback"
	if opts.Release != "" {
		action = ActionRelease
	}
	p.Header("%s %s on %s (%s)", action, cat.Project.Name, env.Name, displayHost(env))
	// A rollback runs the recorded release's files, secrets and all; the
	// values resolved now only hide secrets in what is printed.
	if _, err := secrets.Resolve(ctx, cat, env); err != nil {
		p.Line(ui.Warn, "secrets", "%v (only used to hide secrets in the output)", firstLine(err))
	}
	t, err := connect(ctx, cat, env, p)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	defer t.Close()
	lock, err := t.acquire(ctx, action, opts.Wait)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	defer lock.Release()
	audit := newAudit(ctx, cat, env, action, opts)
	t.tookOver(ctx, lock, audit)
	if err := crashpoint.Reached(ctx, "rollback:locked"); err != nil {
		return err
	}
	err = t.rollback(ctx, opts, audit, t0)
	err = interrupted(ctx, env, err, false)
	audit.finish(err, t0, check.Redactor(cat), false)
	t.audit(ctx, audit)
	return err
}

// rollback is what Rollback does on the host once it holds its lock.
func (t *target) rollback(ctx context.Context, opts Options, audit *AuditRecord, t0 time.Time) error {
	env, p := t.env, t.p
	st, err := t.fs.List(ctx)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", env.Name, err)
	}
	audit.Previous = st.Current
	if st.Current == "" {
		return fmt.Errorf("rollback %s: no current release in %s on %s: nothing to roll back from (run `mage promote -env=%s` first)",
			env.Name, env.Dir, displayHost(env), env.Name)
	}
	// The newest release before current that went live: one a killed
	// promote left behind never passed its checks.
	prev := ""
	for _, id := range st.Releases {
		if id < st.Current && st.WentLive(id) {
			prev = id
		}
	}
	switch {
	case opts.Release != "" && !slices.Contains(st.Releases, opts.Release):
		return fmt.Errorf("%s %s: no release %s is kept in %s on %s (kept: %s; `mage releases -env=%s` lists them)",
			ActionRelease, env.Name, opts.Release, env.Dir, displayHost(env), strings.Join(st.Releases, ", "), env.Name)
	case opts.Release != "" && !st.WentLive(opts.Release):
		return fmt.Errorf("%s %s: release %s never went live (a promote stopped before its checks passed): `mage promote -env=%s` makes a new one",
			ActionRelease, env.Name, opts.Release, env.Name)
	case opts.Release != "":
		prev = opts.Release
	case prev == "":
		return fmt.Errorf("rollback %s: no release before %s went live on the host (releases: %s): there is none to go back to",
			env.Name, st.Current, strings.Join(st.Releases, ", "))
	}
	p.Line(ui.Info, audit.Action, "from %s to %s", st.Current, prev)
	audit.Release = prev
	if rec, _, err := record.LoadRelease(opts.LocalDeployDir, env.Name, prev); err == nil {
		audit.Images = rec.ImageIDs
	}
	if err := t.restore(ctx, opts, prev, true); err != nil {
		var te *record.TamperedError
		if errors.As(err, &te) || errors.Is(err, record.ErrNoRecord) {
			return fmt.Errorf("rollback %s: %w", env.Name, err)
		}
		return t.recoverRollback(ctx, opts, prev, st.Current, "start", err)
	}
	if _, err := t.checks(ctx); err != nil {
		return t.recoverRollback(ctx, opts, prev, st.Current, "checks", err)
	}
	if err := crashpoint.Reached(ctx, "rollback:checked"); err != nil {
		return t.recoverRollback(ctx, opts, prev, st.Current, "activate", err)
	}
	if _, err := t.fs.Activate(ctx, prev); err != nil {
		return t.recoverRollback(ctx, opts, prev, st.Current, "activate", err)
	}
	p.Line(ui.OK, "current", "%s/current -> releases/%s", env.Dir, prev)
	p.Line(ui.OK, audit.Action, "%s is live on %s again in %s", prev, env.Name, ui.Seconds(time.Since(t0)))
	return nil
}

func (t *target) recoverRollback(ctx context.Context, opts Options, id, current, step string, cause error) error {
	e := &Error{Env: t.env.Name, Release: id, Step: step, Err: cause, Previous: current, Interrupted: interrupt.Interrupted(ctx)}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.env.HealthDeadline()+2*time.Minute)
	defer cancel()
	if e.Interrupted {
		t.p.Line(ui.Warn, step, "rollback to %s %v: putting %s back", id, interrupt.ErrInterrupted, current)
	} else {
		t.p.Line(ui.Fail, step, "rollback to %s failed: %v", id, firstLine(cause))
	}
	if err := t.restore(ctx, opts, current, false); err != nil {
		e.RestoreErr = err
	} else {
		e.Restored = true
		t.p.Line(ui.OK, "restore", "%s is running and healthy again", current)
	}
	return e
}

// look connects to env's host for a command that only reads it (releases,
// history): quietly, and without the lock.
func look(ctx context.Context, cat *catalog.Catalog, envName, command string) (*target, error) {
	env, err := cat.Env(envName)
	if err != nil {
		return nil, err
	}
	t, err := connect(ctx, cat, env, ui.Plain(io.Discard))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", command, env.Name, err)
	}
	return t, nil
}

// lookState is look with the host's releases: what a command that only
// reads the host starts with. The caller closes the target.
func lookState(ctx context.Context, cat *catalog.Catalog, opts *Options, command string) (*target, *hostfs.State, error) {
	opts.defaults(cat)
	t, err := look(ctx, cat, opts.Env, command)
	if err != nil {
		return nil, nil, err
	}
	st, err := t.fs.List(ctx)
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", command, t.env.Name, err)
	}
	return t, st, nil
}

// openHost connects to the host of opts.Env for a command that changes it or
// says how it stands, step by step under a header; with lock, holding the
// environment's lock (the caller releases it, then closes the target).
func openHost(ctx context.Context, cat *catalog.Catalog, opts *Options, command string, lock bool) (*target, *hostfs.Lock, error) {
	opts.defaults(cat)
	env, err := cat.Env(opts.Env)
	if err != nil {
		return nil, nil, err
	}
	opts.Printer.Header("%s %s on %s (%s)", command, cat.Project.Name, env.Name, displayHost(env))
	t, err := connect(ctx, cat, env, opts.Printer)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", command, env.Name, err)
	}
	if !lock {
		return t, nil, nil
	}
	l, err := t.acquire(ctx, command, opts.Wait)
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", command, env.Name, err)
	}
	return t, l, nil
}

// Releases lists the releases on the host of opts.Env, oldest first, with
// the current one marked, and prints them as a table.
func Releases(ctx context.Context, cat *catalog.Catalog, opts Options) ([]Release, error) {
	t, st, err := lookState(ctx, cat, &opts, "releases")
	if err != nil {
		return nil, err
	}
	defer t.Close()
	env := t.env
	recorded := record.Releases(opts.LocalDeployDir, env.Name)
	out := make([]Release, 0, len(st.Releases))
	var rows [][]string
	for _, id := range st.Releases {
		r := parseRelease(id)
		r.Current = id == st.Current
		r.Recorded = slices.Contains(recorded, id)
		out = append(out, r)
		mark := ""
		switch {
		case r.Current:
			mark = opts.Printer.Colorize(ui.OK, "current")
		case !st.WentLive(id):
			// Left by a promote stopped before its checks passed; the
			// next promote's prune removes it.
			mark = opts.Printer.Colorize(ui.Warn, "never went live")
		}
		at := ""
		if !r.At.IsZero() {
			at = r.At.Local().Format("2006-01-02 15:04:05")
		}
		rec := "yes"
		if !r.Recorded {
			rec = "no (shipped from elsewhere: no rollback to it from here)"
		}
		rows = append(rows, []string{id, at, r.Commit, rec, mark})
	}
	opts.Printer.Header("releases of %s on %s (%s:%s)", cat.Project.Name, env.Name, displayHost(env), env.Dir)
	if len(rows) == 0 {
		opts.Printer.Line(ui.Info, "", "no releases yet: `mage promote -env=%s` makes the first", env.Name)
	} else {
		opts.Printer.Table([]string{"RELEASE", "MADE", "COMMIT", "RECORDED HERE", ""}, rows)
	}
	return out, nil
}
