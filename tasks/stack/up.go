package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// upState is what the last successful up saw, kept in .state/last-up.json:
// when the rendered files and every image are the same and each container
// is running healthy on that image, up has nothing to do and skips compose.
type upState struct {
	Files  string            `json:"files_sha256"`
	Images map[string]string `json:"images"`
	At     time.Time         `json:"at"`
}

func (s *Stack) statePath(name string) string { return filepath.Join(s.Dir, ".state", name) }

// filesSum hashes what compose reads: the unified file and its .env.
func (s *Stack) filesSum() (string, error) {
	h := sha256.New()
	for _, name := range []string{render.ComposeFile, ".env"} {
		b, err := os.ReadFile(filepath.Join(s.Dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && name == render.ComposeFile {
				return "", &UsageError{Msg: fmt.Sprintf("%s has no %s: run `mage render` (or `mage deployAll`) first", s.Dir, render.ComposeFile)}
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// wantImages resolves the image each service must run now.
func (s *Stack) wantImages(ctx context.Context, eng *engine.Engine) (map[string]engine.Image, error) {
	out := map[string]engine.Image{}
	for _, svc := range s.Cat.All() {
		ref := s.Cat.ImageRef(svc)
		img, err := eng.Image(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("%s: image %s: %w (run `mage build`)", svc.Name, ref, err)
		}
		out[svc.Name] = img
	}
	return out, nil
}

// upToDate reports whether the running stack already is what up would make.
func (s *Stack) upToDate(ctx context.Context, eng *engine.Engine, sum string, images map[string]engine.Image) (bool, error) {
	b, err := os.ReadFile(s.statePath("last-up.json"))
	if err != nil {
		return false, nil
	}
	var st upState
	if json.Unmarshal(b, &st) != nil || st.Files != sum || len(st.Images) != len(images) {
		return false, nil
	}
	for k, v := range images {
		if st.Images[k] != v.ID {
			return false, nil
		}
	}
	cs, err := health.Containers(ctx, eng, s.Project())
	if err != nil {
		return false, err
	}
	byService := map[string][]engine.Container{}
	for _, c := range cs {
		byService[c.Service] = append(byService[c.Service], c)
	}
	for _, svc := range s.Cat.All() {
		c := byService[svc.Name]
		if len(c) != 1 || c[0].ImageID != images[svc.Name].ID || !s.healthy(c[0]) {
			return false, nil
		}
	}
	return true, nil
}

// release is what the local runtime runs: the deployment folder, and per
// service its image and the config hash its container must carry (that of
// the rendered files).
func (s *Stack) release(images map[string]engine.Image, hashes map[string]string) *runtime.Release {
	rel := &runtime.Release{Project: s.Project(), Cat: s.Cat, Env: s.Env, Dir: s.Dir, HostAddr: s.HTTPHost(),
		Printer: s.Out, Redact: check.Redactor(s.Cat)}
	for _, t := range health.Targets(s.Cat, s.Env, s.HTTPHost()) {
		svc, _ := s.Cat.Service(t.Service)
		port, _ := svc.HostPort(s.Env.Ports)
		rel.Services = append(rel.Services, runtime.Service{Name: svc.Name, Image: s.Cat.ImageRef(svc), ImageID: images[svc.Name].ID, ImageName: images[svc.Name].Name(),
			ConfigHash: hashes[svc.Name], ContainerPort: svc.Port, HostPort: port, HealthURL: t.URL, Stateful: len(svc.Volumes) > 0, DependsOn: svc.DependsOn,
			OneShot: t.OneShot})
	}
	return rel
}

func (s *Stack) runtime(eng *engine.Engine, cli *compose.CLI) runtime.Runtime {
	return &runtime.Compose{Engine: eng, CLI: cli}
}

// Up starts the rendered stack and waits until every service is healthy.
func (s *Stack) Up(ctx context.Context) error {
	start := time.Now()
	s.Out.Header("up %s (project %s)", s.Env.Name, s.Project())
	if err := s.Secrets(ctx); err != nil {
		return err
	}
	sum, err := s.filesSum()
	if err != nil {
		return err
	}
	hashes, views, err := s.catalogNow()
	if err != nil {
		return err
	}
	s.warnDrift("up", s.renderDrift(hashes, views), "up starts what was rendered; run `mage render` first (or `mage deployAll`) to start what the catalog says")
	// Compose runs the rendered files: the containers must carry their
	// hashes, which the render record knows.
	if rec, err := record.ReadRendered(s.Dir); err == nil && rec.Env == s.Env.Name {
		hashes = rec.Hashes
	}
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	images, err := s.wantImages(ctx, eng)
	if err != nil {
		return err
	}
	if ok, err := s.upToDate(ctx, eng, sum, images); err != nil {
		return err
	} else if ok {
		session.recordUp(nil, true)
		s.Out.Line(ui.OK, "up", "nothing changed: %d services running and healthy (%s)", len(images), since(start))
		return nil
	}
	if err := s.checkPorts(ctx, eng); err != nil {
		return err
	}
	cli, err := compose.Detect(ctx)
	if err != nil {
		return err
	}
	if err := crashpoint.Reached(ctx, "up:before-compose"); err != nil {
		return err
	}
	rel := s.release(images, hashes)
	pl, err := s.runtime(eng, cli).Apply(ctx, rel)
	session.recordUp(pl, false)
	if err != nil {
		return err
	}
	if err := crashpoint.Reached(ctx, "up:before-state"); err != nil {
		return err
	}
	ids := map[string]string{}
	for n, img := range images {
		ids[n] = img.ID
	}
	st, _ := json.MarshalIndent(upState{Files: sum, Images: ids, At: time.Now().UTC()}, "", "  ")
	if err := atomicfile.Write(s.statePath("last-up.json"), st, 0o600); err != nil {
		return err
	}
	s.Out.Line(ui.OK, "up", "%d services healthy: %s (%s)", len(rel.Services), pl.Summary(), since(start))
	return nil
}

// Down removes the stack's containers and network, and its volumes when
// asked, as the runtime takes a promoted stack down.
func (s *Stack) Down(ctx context.Context, volumes bool) error {
	if _, err := s.filesSum(); err != nil {
		return err
	}
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	// testAll's probe server sits on the stack's network without being a
	// compose service, and the network cannot go while it is attached.
	if err := check.RemoveProbe(ctx, eng.API, s.Project()); err != nil {
		return fmt.Errorf("down %s: %w", s.Project(), err)
	}
	if err := s.runtime(eng, nil).Remove(ctx, &runtime.Release{Project: s.Project(), Cat: s.Cat, Env: s.Env, Dir: s.Dir, Printer: s.Out}, volumes); err != nil {
		return fmt.Errorf("down %s: %w", s.Project(), err)
	}
	_ = os.Remove(s.statePath("last-up.json"))
	what := "containers and network removed, volumes kept"
	if volumes {
		what = "containers, network and volumes removed"
	}
	s.Out.Line(ui.OK, "down", "%s: %s", s.Project(), what)
	return nil
}
