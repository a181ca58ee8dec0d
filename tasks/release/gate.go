package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/record"
)

// GateError is a refused promotion: what differs from the last passing
// testAll, and how to fix it.
type GateError struct {
	Env     string
	Reasons []string
	// untested: no passing testAll at all (else one that differs).
	untested bool
}

func (e *GateError) Error() string {
	return fmt.Sprintf("promote %s refused: the release is not what the last testAll passed:\n  - %s\n"+
		"fix: run `mage deployAll` on dev (or `mage up`, then `mage testAll`), and promote when it passes; "+
		"to ship it untested anyway, add -force (it says so loudly)",
		e.Env, strings.Join(e.Reasons, "\n  - "))
}

// Untested reports whether no passing testAll was recorded at all, as
// opposed to one that differs from the release.
func (e *GateError) Untested() bool { return e.untested }

// Gate is promote's first step on its own: it compares what a promote to
// opts.Env would ship now, the images the catalog's references point at on
// the local engine and the catalog's configuration, with what the last
// testAll saw running. It returns the image ID of every service and a
// *GateError when they differ (whatever opts.Force says); it connects to
// nothing but the local engine.
func Gate(ctx context.Context, cat *catalog.Catalog, opts Options) (map[string]string, error) {
	opts.defaults(cat)
	env, err := cat.Env(opts.Env)
	if err != nil {
		return nil, err
	}
	local, err := engine.Connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("promote: the local engine holds the tested images: %w", err)
	}
	defer local.Close()
	return gate(ctx, local, cat, env, opts.LocalDeployDir)
}

// gate resolves the image each service would ship and checks them and the
// catalog against the test record in deployDir (checkGate).
func gate(ctx context.Context, local *engine.Engine, cat *catalog.Catalog, env *catalog.Environment, deployDir string) (map[string]string, error) {
	ids := map[string]string{}
	names := map[string]string{}
	for _, s := range cat.All() {
		img, err := local.Image(ctx, cat.ImageRef(s))
		if err != nil {
			return nil, fmt.Errorf("promote: image of %s: %w (run `mage build`)", s.Name, err)
		}
		ids[s.Name], names[img.ID] = img.ID, img.Name()
	}
	key, err := record.Key(deployDir)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	name := func(id string) string {
		if n, ok := names[id]; ok {
			return n
		}
		if img, err := local.Image(ctx, id); err == nil {
			return img.Name()
		}
		return engine.ShortID(id)
	}
	if gerr := checkGate(cat, env.Name, deployDir, key, ids, name); gerr != nil {
		return ids, gerr
	}
	return ids, nil
}

// checkGate compares the test record in deployDir with the images and
// configuration about to be shipped. images maps service to the local
// image ID now; key is deployDir's digest key; name says an image ID the
// way build's output does.
func checkGate(cat *catalog.Catalog, env, deployDir string, key []byte, images map[string]string, name func(id string) string) *GateError {
	rec, err := record.ReadTest(deployDir)
	if err != nil {
		where := filepath.Join(deployDir, filepath.FromSlash(record.TestFile))
		if errors.Is(err, os.ErrNotExist) {
			return &GateError{Env: env, untested: true, Reasons: []string{"no testAll has been recorded in " + deployDir + " (no " + where + ")"}}
		}
		return &GateError{Env: env, untested: true, Reasons: []string{err.Error()}}
	}
	var reasons []string
	if !rec.Passed {
		reasons = append(reasons, fmt.Sprintf("the last testAll (%s, %s) failed", rec.Env, rec.At.Local().Format(time.RFC3339)))
	}
	if rec.Env != "dev" {
		reasons = append(reasons, fmt.Sprintf("the last testAll ran on %q, not on dev", rec.Env))
	}
	if rec.Project != "" && rec.Project != cat.Project.Name {
		reasons = append(reasons, fmt.Sprintf("the last testAll tested project %q, not %q", rec.Project, cat.Project.Name))
	}
	now := record.Views(cat, key)
	for _, c := range record.Compare(map[string]record.View{record.ProjectKey: rec.Config[record.ProjectKey]},
		map[string]record.View{record.ProjectKey: now[record.ProjectKey]}) {
		reasons = append(reasons, "since the last testAll, "+c.String())
	}
	for _, s := range cat.All() {
		n := s.Name
		tested, ok := rec.Images[n]
		if !ok {
			reasons = append(reasons, fmt.Sprintf("%s: the last testAll checked no container of it", n))
			continue
		}
		if tested != images[n] {
			reasons = append(reasons, fmt.Sprintf("%s: image %s (%s now) is not %s, which its container ran when testAll checked it",
				n, name(images[n]), cat.ImageRef(s), name(tested)))
		}
		ran, ok := rec.Config[n]
		if !ok {
			reasons = append(reasons, fmt.Sprintf("%s: the container testAll checked ran a configuration that is neither the catalog's "+
				"nor the last render's (it was started before them)", n))
			continue
		}
		for _, c := range record.Compare(map[string]record.View{n: ran}, map[string]record.View{n: now[n]}) {
			// Secret values differ between dev and the promoted
			// environment by design; their names are compared.
			if c.Secret() && c.Was != "" && c.Now != "" {
				continue
			}
			reasons = append(reasons, "since the container testAll checked was started, "+c.String())
		}
	}
	if len(reasons) > 0 {
		return &GateError{Env: env, Reasons: reasons, untested: !rec.Passed}
	}
	return nil
}
