package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// buildTail is how many lines of build output a failed build's error keeps.
const buildTail = 30

// BuildSpec is one image to build.
type BuildSpec struct {
	// Service names the image in messages and errors.
	Service string
	// Context is the absolute build context folder.
	Context string
	// Dockerfile is relative to Context (default "Dockerfile").
	Dockerfile string
	// Repo is the image repository, e.g. "maestro/quality-fabric"
	// (catalog.ImageRepo). A build is tagged Repo:<hash12>, and Repo:latest
	// is moved to it once it succeeded.
	Repo string
	// Prebuild is a command (argument list) run in Context before the
	// build, e.g. a static go build; PrebuildEnv is added to its
	// environment.
	Prebuild    []string
	PrebuildEnv map[string]string
	// PrebuildInputs are the files and folders (absolute, or relative to
	// Context) whose content decides whether Prebuild runs again (default:
	// Context). PrebuildOutputs, relative to Context, are left out of that
	// hash and must exist for a run to be skipped.
	PrebuildInputs  []string
	PrebuildOutputs []string
	// Labels are put on the image; they are part of its content hash.
	Labels map[string]string
	// BuildArgs are passed to the build; they are part of its content hash.
	BuildArgs map[string]string
	// Target is the Dockerfile stage to build ("" = the last); part of the
	// content hash.
	Target string
}

// BuildResult is what Build did for one spec.
type BuildResult struct {
	Service string
	// Ref is the immutable reference of the image: Repo:<hash12>.
	Ref string
	// ImageID is the image's ID ("sha256:...").
	ImageID string
	// Hash is the full content hash (labels.ContextHash).
	Hash string
	// Cached is true when an image with this hash already existed and no
	// build ran.
	Cached bool
	// PrebuildSkipped is true when the prebuild's inputs were unchanged.
	PrebuildSkipped bool
	Duration        time.Duration
}

// BuildOptions tune Build.
type BuildOptions struct {
	// Parallel bounds how many services are built at once (default
	// 4*runtime.NumCPU()). An image build waits on the engine rather than
	// on this machine's CPUs (measured here: three classic builds at once
	// take as long as one), so it is bounded more loosely than Prebuilds.
	Parallel int
	// Prebuilds bounds how many prebuild commands run at once (default
	// runtime.NumCPU()): they compile, so they compete for CPUs.
	Prebuilds int
	// Printer receives one status line per service (nil: silent).
	Printer *ui.Printer
	// StateDir holds the prebuild stamps (default
	// os.UserCacheDir()/mage-deploy).
	StateDir string
}

// imageBuilds counts ImageBuild calls, so tests can tell a cached build
// from a real one without timing.
var imageBuilds atomic.Int64

// Build makes sure an image exists for every spec, in parallel: prebuild
// (skipped when its inputs are unchanged), content hash of the context,
// then either reuse of the image carrying that hash or a build. Repo:latest
// ends up on each service's image. When one service fails the others are
// cancelled; the error names every failed service with its output tail.
// Results are in spec order; a failed or cancelled spec's result holds only
// what was known before it stopped (Service, maybe Hash and Ref).
func (e *Engine) Build(ctx context.Context, specs []BuildSpec, opts BuildOptions) ([]BuildResult, error) {
	if err := checkSpecs(specs); err != nil {
		return nil, err
	}
	p := opts.Printer
	if p == nil {
		p = ui.Plain(io.Discard)
	}
	if opts.StateDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("build: no state folder for prebuild stamps (set BuildOptions.StateDir): %w", err)
		}
		opts.StateDir = filepath.Join(dir, "mage-deploy")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4 * runtime.NumCPU()
	}
	if opts.Prebuilds <= 0 {
		opts.Prebuilds = runtime.NumCPU()
	}
	slots := newPrebuildSlots(opts.Prebuilds)

	// One ImageList for every service: the noop case costs this call and
	// the hashing, nothing else.
	images := sync.OnceValues(func() ([]image.Summary, error) {
		r, err := e.API.ImageList(ctx, client.ImageListOptions{
			Filters: client.Filters{}.Add("label", labels.ContextHash)})
		if err != nil {
			return nil, fmt.Errorf("list images on %s: %w", e.Host, err)
		}
		return r.Items, nil
	})

	results := make([]BuildResult, len(specs))
	errs := make([]error, len(specs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallel)
	for i := range specs {
		g.Go(func() error {
			if gctx.Err() != nil {
				errs[i] = gctx.Err()
				return errs[i]
			}
			// The service's live line: shown once it has something slow to
			// do (a prebuild, an image build), so an unchanged service
			// prints only its "cached" line.
			a := p.Activity(specs[i].Service)
			r, err := e.buildOne(gctx, &specs[i], opts.StateDir, images, slots, p, a)
			results[i] = r
			if err != nil {
				errs[i] = err
				if ctx.Err() == nil && errors.Is(err, context.Canceled) {
					a.Done(ui.Skip, "cancelled after %s", ui.Seconds(r.Duration))
				} else {
					a.Done(ui.Fail, "failed after %s", ui.Seconds(r.Duration))
				}
			}
			return err
		})
	}
	_ = g.Wait()
	return results, joinBuildErrors(ctx, specs, errs, results)
}

func checkSpecs(specs []BuildSpec) error {
	seen := map[string]string{}
	for i := range specs {
		s := &specs[i]
		switch {
		case s.Service == "":
			return fmt.Errorf("build: spec %d has no service name", i)
		case !filepath.IsAbs(s.Context):
			return fmt.Errorf("build %s: context %q is not an absolute path", s.Service, s.Context)
		case s.Repo == "":
			return fmt.Errorf("build %s: no image repository", s.Service)
		case strings.ContainsAny(s.Repo, ":@"):
			return fmt.Errorf("build %s: repository %q must not carry a tag or digest", s.Service, s.Repo)
		}
		if other, ok := seen[s.Repo]; ok {
			return fmt.Errorf("build %s: repository %s is also used by %s", s.Service, s.Repo, other)
		}
		seen[s.Repo] = s.Service
		if s.Dockerfile == "" {
			s.Dockerfile = "Dockerfile"
		}
		if filepath.IsAbs(s.Dockerfile) {
			rel, err := filepath.Rel(s.Context, s.Dockerfile)
			if err != nil || strings.HasPrefix(rel, "..") {
				return fmt.Errorf("build %s: Dockerfile %s is outside the context %s", s.Service, s.Dockerfile, s.Context)
			}
			s.Dockerfile = rel
		}
		if fi, err := os.Stat(filepath.Join(s.Context, s.Dockerfile)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("build %s: no Dockerfile at %s", s.Service, filepath.Join(s.Context, s.Dockerfile))
		}
	}
	return nil
}

// joinBuildErrors reports real failures first, then the services that
// were cancelled because of them.
func joinBuildErrors(ctx context.Context, specs []BuildSpec, errs []error, results []BuildResult) error {
	var failed, cancelled []string
	var all []error
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() == nil && errors.Is(err, context.Canceled) {
			cancelled = append(cancelled, specs[i].Service)
			continue
		}
		failed = append(failed, specs[i].Service)
		all = append(all, err)
	}
	if len(all) == 0 && len(cancelled) == 0 {
		return nil
	}
	if len(cancelled) > 0 {
		all = append(all, fmt.Errorf("cancelled because %s failed: %s", strings.Join(failed, ", "), strings.Join(cancelled, ", ")))
	}
	return errors.Join(all...)
}

func (e *Engine) buildOne(ctx context.Context, s *BuildSpec, stateDir string, images func() ([]image.Summary, error), slots *prebuildSlots, p *ui.Printer, a *ui.Activity) (r BuildResult, err error) {
	t0 := time.Now()
	r.Service = s.Service
	defer func() { r.Duration = time.Since(t0) }()

	if len(s.Prebuild) > 0 {
		sum, current, err := prebuildCurrent(s, stateDir)
		if err != nil {
			return r, fmt.Errorf("build %s: prebuild: %w", s.Service, err)
		}
		r.PrebuildSkipped = current
		if !current {
			command := strings.Join(s.Prebuild, " ")
			release, err := slots.acquire(ctx, s.Prebuild[0], func(why string) { a.Update("waiting for "+why, "") })
			if err != nil {
				return r, err
			}
			state := "prebuilding (" + command + ")"
			a.Update(state, "")
			err = runPrebuild(ctx, s, stateDir, sum, func(line string) { a.Progress(line) })
			release()
			if err != nil {
				return r, fmt.Errorf("build %s: %w", s.Service, err)
			}
			p.Line(ui.Info, s.Service, "prebuilt (%s) in %s", command, ui.Seconds(time.Since(t0)))
		}
		if err := crashpoint.Reached(ctx, "build:after-prebuild"); err != nil {
			return r, err
		}
	}
	entries, err := contextEntries(s.Context, s.Dockerfile)
	if err != nil {
		return r, fmt.Errorf("build %s: %w", s.Service, err)
	}
	imgLabels := maps.Clone(s.Labels)
	if imgLabels == nil {
		imgLabels = map[string]string{}
	}
	// A target rides on the Dockerfile's field ("Dockerfile\x00target=x",
	// a NUL no file name holds), so that builds without one keep their hash.
	df := s.Dockerfile
	if s.Target != "" {
		df += "\x00target=" + s.Target
	}
	sum, err := contextHash(entries, df, s.BuildArgs, imgLabels)
	if err != nil {
		return r, fmt.Errorf("build %s: hash context: %w", s.Service, err)
	}
	imgLabels[labels.ContextHash] = sum
	r.Hash = sum
	r.Ref = s.Repo + ":" + HashTag(sum)
	latest := s.Repo + ":latest"

	list, err := images()
	if err != nil {
		return r, fmt.Errorf("build %s: %w", s.Service, err)
	}
	if img, ok := findImage(list, sum, s.Repo); ok {
		r.ImageID, r.Cached = img.ID, true
		for _, ref := range []string{r.Ref, latest} {
			if !slices.Contains(img.RepoTags, ref) {
				if _, err := e.API.ImageTag(ctx, client.ImageTagOptions{Source: img.ID, Target: ref}); err != nil {
					return r, fmt.Errorf("build %s: tag %s: %w", s.Service, ref, err)
				}
			}
		}
		a.Done(ui.Skip, "cached %s%s", r.Ref, prebuildNote(r.PrebuildSkipped))
		return r, nil
	}

	outside := e.builtOutside(ctx, latest)
	a.Update("building "+r.Ref, "")
	id, err := e.imageBuild(ctx, s, entries, r.Ref, imgLabels, a.Progress)
	if err != nil {
		e.untag(ctx, r.Ref)
		return r, fmt.Errorf("build %s (%s): %w", s.Service, s.Context, err)
	}
	r.ImageID = id
	if err := crashpoint.Reached(ctx, "build:before-tag"); err != nil {
		return r, err
	}
	if _, err := e.API.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: latest}); err != nil {
		return r, fmt.Errorf("build %s: tag %s: %w", s.Service, latest, err)
	}
	if outside {
		a.Done(ui.OK, "built %s in %s; %s was built outside mage (deploy-all.sh?) and now names this build", r.Ref, ui.Seconds(time.Since(t0)), latest)
	} else {
		a.Done(ui.OK, "built %s in %s", r.Ref, ui.Seconds(time.Since(t0)))
	}
	return r, nil
}

// builtOutside reports whether ref is an image that mage did not build:
// it exists without the content hash label. deploy-all.sh, or a hand
// build, made it under the tag the services run; mage builds by content
// and moves the tag, and says so, because the containers running that
// image will be replaced. It is asked only when mage builds anyway: one
// inspect, and any error counts as no.
func (e *Engine) builtOutside(ctx context.Context, ref string) bool {
	img, err := e.API.ImageInspect(ctx, ref)
	if err != nil {
		return false
	}
	return img.Config == nil || img.Config.Labels[labels.ContextHash] == ""
}

// prebuildSlots bounds the prebuilds that run at once to the CPUs, and
// lets the first prebuild of each program run before the others of that
// program start. Parallel cold compiles repeat each other's work: six
// `go build`s of services sharing the standard library, two at a time on
// two cores, each compile it while the build cache is still empty (33 s
// measured here), while one compile fills the cache and the others then
// take a second or two each. `go build` itself uses every core meanwhile.
type prebuildSlots struct {
	cpus  chan struct{}
	mu    sync.Mutex
	first map[string]chan struct{} // program -> closed when its first run ended
}

// testHookPrebuildWaits, when set, learns when a prebuild waits for the
// first run of its program.
var testHookPrebuildWaits func(program string)

func newPrebuildSlots(n int) *prebuildSlots {
	return &prebuildSlots{cpus: make(chan struct{}, n), first: map[string]chan struct{}{}}
}

// acquire waits for the first run of program to end (unless this is it)
// and for a free slot; release gives the slot back. waiting, when it has
// to wait, learns what for ("the first go prebuild", "a free CPU").
func (s *prebuildSlots) acquire(ctx context.Context, program string, waiting func(what string)) (release func(), err error) {
	s.mu.Lock()
	done, later := s.first[program]
	if !later {
		done = make(chan struct{})
		s.first[program] = done
	}
	s.mu.Unlock()
	if later {
		select {
		case <-done:
		default:
			waiting("the first " + filepath.Base(program) + " prebuild")
			if testHookPrebuildWaits != nil {
				testHookPrebuildWaits(program)
			}
			select {
			case <-done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	select {
	case s.cpus <- struct{}{}:
	default:
		waiting("a free CPU")
		select {
		case s.cpus <- struct{}{}:
		case <-ctx.Done():
			if !later {
				close(done)
			}
			return nil, ctx.Err()
		}
	}
	return func() {
		<-s.cpus
		if !later {
			close(done)
		}
	}, nil
}

func prebuildNote(skipped bool) string {
	if skipped {
		return " (prebuild up to date)"
	}
	return ""
}

// findImage picks the image carrying the hash, preferring one already in
// repo. An identical build under another repository is as good: same
// context, Dockerfile, args and labels make the same image.
func findImage(list []image.Summary, sum, repo string) (image.Summary, bool) {
	var other *image.Summary
	for i := range list {
		if list[i].Labels[labels.ContextHash] != sum {
			continue
		}
		for _, t := range list[i].RepoTags {
			if strings.HasPrefix(t, repo+":") {
				return list[i], true
			}
		}
		if other == nil {
			other = &list[i]
		}
	}
	if other != nil {
		return *other, true
	}
	return image.Summary{}, false
}

// buildMessage is one line of the build's JSON stream. The classic builder
// reports a failure in the stream (error/errorDetail), with HTTP 200.
type buildMessage struct {
	ID          string                    `json:"id"`
	Stream      string                    `json:"stream"`
	Status      string                    `json:"status"`
	Error       string                    `json:"error"`
	ErrorDetail *struct{ Message string } `json:"errorDetail"`
	Aux         json.RawMessage           `json:"aux"`
}

// failure is the error the message reports, "" when it reports none.
func (m *buildMessage) failure() string {
	if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
		return m.ErrorDetail.Message
	}
	return m.Error
}

// imageBuild sends the context and follows the build to its end, returning
// the new image's ID.
//
// progress learns what the build is at: the context sent so far while it
// uploads, then each step's name ("[2/3] COPY app /app") as the builder
// starts it.
func (e *Engine) imageBuild(ctx context.Context, s *BuildSpec, entries []entry, ref string, imgLabels map[string]string, progress func(string)) (string, error) {
	send := func(w *io.PipeWriter) {
		w.CloseWithError(writeTar(&contextProgress{w: w, progress: progress}, entries))
	}
	pr, pw := io.Pipe()
	defer pr.Close()
	go send(pw)

	var args map[string]*string
	if len(s.BuildArgs) > 0 {
		args = map[string]*string{}
		for k, v := range s.BuildArgs {
			args[k] = &v
		}
	}
	imageBuilds.Add(1)
	opts := client.ImageBuildOptions{
		Tags:        []string{ref},
		Dockerfile:  filepath.ToSlash(s.Dockerfile),
		Labels:      imgLabels,
		BuildArgs:   args,
		Target:      s.Target,
		Remove:      true,
		ForceRemove: true, // no intermediate containers left behind by a failed step
		Version:     builderVersion(),
	}
	res, err := e.API.ImageBuild(ctx, pr, opts)
	if err != nil && opts.Version == build.BuilderBuildKit && buildkitRefused(err) {
		// The context stream was consumed: send it again to the classic builder.
		classicOnly.Store(true)
		pr2, pw2 := io.Pipe()
		defer pr2.Close()
		go send(pw2)
		opts.Version = build.BuilderV1
		res, err = e.API.ImageBuild(ctx, pr2, opts)
	}
	if err != nil {
		return "", err
	}
	defer res.Body.Close()

	var tail []string
	add := func(text string) {
		for _, l := range strings.Split(text, "\n") {
			if l = strings.TrimRight(l, "\r "); l != "" {
				tail = append(tail, l)
			}
		}
		if len(tail) > buildTail {
			tail = tail[len(tail)-buildTail:]
		}
	}
	var id, failure, layer string
	steps := map[string]bool{}
	dec := json.NewDecoder(res.Body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("read build output: %w%s", err, errTail(tail))
		}
		add(m.Stream)
		add(m.Status)
		if m.ID == "moby.buildkit.trace" {
			lines, started := traceLines(m.Aux, steps)
			for _, l := range lines {
				add(l)
			}
			for _, name := range started {
				progress(ui.Clean(name))
			}
		}
		// The classic builder names its steps in the stream.
		if l := strings.TrimSpace(m.Stream); strings.HasPrefix(l, "Step ") {
			progress(ui.Clean(l))
		}
		if l := strings.TrimSpace(m.Stream); strings.HasPrefix(l, "---> ") && isHexID(l[5:]) {
			layer = l[5:]
		}
		if f := m.failure(); f != "" {
			failure = f
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
	}
	if failure != "" {
		e.removeIntermediate(ctx, layer)
		return "", fmt.Errorf("%s%s", failure, errTail(tail))
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if id == "" {
		// Older engines print "Successfully built" without an aux ID.
		got, err := e.ImageID(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("build ended without an image: %w%s", err, errTail(tail))
		}
		id = got
	}
	return id, nil
}

// untag removes ref if a failed or cancelled build left it behind, so no
// tag points at a partial build. It runs even when ctx is cancelled.
func (e *Engine) untag(ctx context.Context, ref string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if _, err := e.API.ImageInspect(cctx, ref); err != nil {
		return
	}
	_, _ = e.API.ImageRemove(cctx, ref, client.ImageRemoveOptions{})
}

// removeIntermediate drops the untagged image a failed classic build left
// after its last good step, with its untagged parents. It is best effort:
// the engine refuses while another image or a container uses it.
func (e *Engine) removeIntermediate(ctx context.Context, id string) {
	if id == "" {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	img, err := e.API.ImageInspect(cctx, id)
	if err != nil || len(img.RepoTags) > 0 {
		return
	}
	_, _ = e.API.ImageRemove(cctx, id, client.ImageRemoveOptions{PruneChildren: true})
}

// contextProgress reports the build context sent so far, once per MB: a
// large context takes a while to upload before the first step starts.
type contextProgress struct {
	w        io.Writer
	n        int64
	progress func(string)
}

func (c *contextProgress) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	before := c.n
	c.n += int64(n)
	if c.n>>20 != before>>20 {
		c.progress("sending context, " + ui.Bytes(c.n))
	}
	return n, err
}

func isHexID(s string) bool {
	if len(s) < 12 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
