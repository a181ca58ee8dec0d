package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// renderOptions are how the local stack is rendered: with build sections,
// secrets in the config hashes by a digest keyed for the folder. With
// readOnly (plan) a folder that has no key yet gets none made.
func (s *Stack) renderOptions(readOnly bool) (render.Options, error) {
	read := record.Key
	if readOnly {
		read = record.ReadKey
	}
	k, err := read(s.Dir)
	if err != nil {
		return render.Options{}, err
	}
	// Write and Plan check the compose files they change: a noop render
	// checks nothing.
	return render.Options{Build: true, DeferValidation: true, SecretKey: k}, nil
}

func (s *Stack) tree(readOnly bool) (render.Tree, error) {
	opts, err := s.renderOptions(readOnly)
	if err != nil {
		return nil, err
	}
	tree, err := render.Render(s.Cat, s.Env, opts)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", s.Env.Name, err)
	}
	return tree, nil
}

// Render writes the deployment folder for the stack's environment.
func (s *Stack) Render(ctx context.Context) error {
	start := time.Now()
	s.Out.Header("render %s -> %s", s.Env.Name, s.Dir)
	if err := s.Secrets(ctx); err != nil {
		return err
	}
	tree, err := s.tree(false)
	if err != nil {
		return err
	}
	res, err := render.Write(s.Dir, tree, render.WriteOptions{Overwrite: s.cfg.Overwrite,
		BeforeSwap: func() error { return crashpoint.Reached(ctx, "render:before-swap") }})
	if err != nil {
		return err
	}
	if err := s.recordRender(); err != nil {
		return err
	}
	for _, b := range res.BackedUp {
		s.Out.Line(ui.Warn, b.File, "edited by hand: replaced; your version is kept in %s", filepath.Join(s.Dir, b.Copy))
	}
	for _, f := range res.Written {
		s.Out.Line(ui.OK, f, "written")
	}
	for _, f := range res.Removed {
		s.Out.Line(ui.Info, f, "removed (no longer in the catalog)")
	}
	if len(res.Written)+len(res.Removed) == 0 {
		s.Out.Line(ui.OK, "render", "nothing changed: %d files up to date (%s)", len(res.Unchanged), since(start))
		return nil
	}
	s.Out.Line(ui.OK, "render", "%d written, %d unchanged, %d removed (%s)", len(res.Written), len(res.Unchanged), len(res.Removed), since(start))
	return nil
}

// catalogNow is the catalog's configuration now, as render would write it:
// each service's config hash, and the views of the catalog.
func (s *Stack) catalogNow() (map[string]string, map[string]record.View, error) {
	opts, err := s.renderOptions(false)
	if err != nil {
		return nil, nil, err
	}
	hashes, err := render.ConfigHashes(s.Cat, s.Env, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("render %s: %w", s.Env.Name, err)
	}
	return hashes, record.Views(s.Cat, opts.SecretKey), nil
}

// recordRender keeps what the folder was just rendered from (record.Rendered).
func (s *Stack) recordRender() error {
	hashes, views, err := s.catalogNow()
	if err != nil {
		return err
	}
	return record.WriteRendered(s.Dir, record.Rendered{Env: s.Env.Name, Hashes: hashes, Config: views, At: time.Now().UTC()})
}

// renderDrift says how the catalog now differs from what the folder was
// last rendered from, change by change; nothing when it does not, or when
// no render of this environment was recorded.
func (s *Stack) renderDrift(hashes map[string]string, views map[string]record.View) []string {
	rec, err := record.ReadRendered(s.Dir)
	if err != nil || rec.Env != s.Env.Name {
		return nil
	}
	var out []string
	for _, c := range record.Compare(rec.Config, views) {
		out = append(out, c.String())
	}
	if len(out) > 0 {
		return out
	}
	// The same catalog may still render otherwise (another version of
	// this tool): the config hashes tell.
	for _, svc := range s.Cat.All() {
		if rec.Hashes[svc.Name] != hashes[svc.Name] {
			out = append(out, svc.Name+": its rendered configuration differs")
		}
	}
	return out
}

// warnDrift prints, for step, that the catalog changed since the last
// render and what that means (then).
func (s *Stack) warnDrift(step string, drift []string, then string) {
	if len(drift) == 0 {
		return
	}
	s.Out.Line(ui.Warn, step, "the catalog changed since the last render of %s: %s", s.Dir, then)
	for _, d := range drift {
		s.Out.Line(ui.Warn, "", "  %s", d)
	}
}

// Plan prints what Render would change as a unified diff. It returns
// ErrPlanChanged when there is something to change.
func (s *Stack) Plan(ctx context.Context) error {
	if err := s.Secrets(ctx); err != nil {
		return err
	}
	tree, err := s.tree(true)
	if err != nil {
		return err
	}
	diff, changed, err := render.Plan(s.Dir, tree)
	if err != nil {
		return err
	}
	if !changed {
		s.Out.Line(ui.OK, "plan", "%s is up to date", s.Dir)
		return nil
	}
	fmt.Fprint(s.Out.Writer(), diff)
	drift, err := render.Drifted(s.Dir, tree)
	if err != nil {
		return err
	}
	if len(drift) > 0 {
		were := "were"
		if len(drift) == 1 {
			were = "was"
		}
		return fmt.Errorf("%w, and %s %s edited by hand: `mage render` stops there; `DEPLOY_OVERWRITE=1 mage render` replaces what was edited, keeping a copy in %s",
			ErrPlanChanged, strings.Join(drift, ", "), were, filepath.Join(s.Dir, render.BackupDir))
	}
	return fmt.Errorf("%w (run `mage render` to apply)", ErrPlanChanged)
}
