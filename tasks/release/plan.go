package release

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/secrets"
	"github.com/maestro-platform/deploy/tasks/ui"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// ErrChanges is returned by Plan when a promote would change something on
// the host.
var ErrChanges = exitcode.New(exitcode.Changes, "a promote would change the host")

// PlanResult is what Plan found.
type PlanResult struct {
	Changes *runtime.Plan
	// Why lists, per replaced service, the configuration keys that differ
	// from the current release (known when this machine holds its record).
	Why map[string][]string
	// Send are the images the host lacks, with their sizes.
	Send  map[string]int64
	Bytes int64
}

// Plan says what `promote` would do on opts.Env's host, changing nothing
// there: which services it would start, replace or remove and why (image,
// configuration, which keys), and which images it would send. It returns
// ErrChanges when there is anything to do.
func Plan(ctx context.Context, cat *catalog.Catalog, opts Options) (*PlanResult, error) {
	opts.defaults(cat)
	p := opts.Printer
	env, err := cat.Env(opts.Env)
	if err != nil {
		return nil, err
	}
	p.Header("plan: promote %s to %s (%s)", cat.Project.Name, env.Name, displayHost(env))
	if _, err := secrets.Resolve(ctx, cat, env); err != nil {
		return nil, err
	}
	local, err := engine.Connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("plan: the local engine holds the images: %w", err)
	}
	defer local.Close()
	key, err := record.Key(opts.LocalDeployDir)
	if err != nil {
		return nil, err
	}
	images, ids := map[string]string{}, map[string]string{}
	for _, s := range cat.All() {
		id, err := local.ImageID(ctx, cat.ImageRef(s))
		if err != nil {
			return nil, fmt.Errorf("plan: image of %s: %w (run `mage build`)", s.Name, err)
		}
		ids[s.Name] = id
		if images[s.Name], err = pin(ctx, local, cat, s, id, true); err != nil {
			return nil, err
		}
	}
	hashes, err := render.ConfigHashes(cat, env, renderOptions(images, "plan", key))
	if err != nil {
		return nil, err
	}
	t, err := connect(ctx, cat, env, ui.Plain(io.Discard))
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", env.Name, err)
	}
	defer t.Close()
	rec := &record.Release{ID: "plan", Images: images, ImageIDs: ids, Hashes: hashes, Services: services(cat, env)}
	for i := range rec.Services {
		rec.Services[i].Secrets = nil // plan mounts nothing
	}
	rel, err := spec(cat, env, rec, "", key, p)
	if err != nil {
		return nil, err
	}
	res := &PlanResult{Why: map[string][]string{}, Send: map[string]int64{}}
	if res.Changes, err = t.rt.Plan(ctx, rel); err != nil {
		return nil, err
	}
	// Which keys: against the record of the release now current.
	var current map[string]record.View
	if st, err := t.fs.List(ctx); err == nil && st.Current != "" {
		if cr, _, err := record.LoadRelease(opts.LocalDeployDir, env.Name, st.Current); err == nil {
			current = cr.Config
		}
	}
	if current != nil {
		for _, c := range record.Compare(current, record.Views(cat, key)) {
			res.Why[c.Service] = append(res.Why[c.Service], c.String())
		}
	}
	for _, s := range cat.All() {
		if _, err := t.eng.API.ImageInspect(ctx, ids[s.Name]); engine.IsNotFound(err) {
			img, err := local.API.ImageInspect(ctx, ids[s.Name])
			if err == nil {
				res.Send[s.Name] = img.Size
				res.Bytes += img.Size
			}
		}
	}
	var rows [][]string
	for _, ch := range res.Changes.Changes {
		why := ch.Why
		if w := res.Why[ch.Service]; len(w) > 0 && ch.Action != runtime.Keep {
			keys := make([]string, len(w))
			for i, c := range w {
				keys[i] = strings.TrimPrefix(c, ch.Service+": ")
			}
			why = strings.TrimSpace(why + "; " + strings.Join(keys, "; "))
			why = strings.TrimPrefix(why, "; ")
		}
		send := "-"
		if n, ok := res.Send[ch.Service]; ok {
			send = ui.Bytes(n)
		}
		action := string(ch.Action)
		if ch.Action != runtime.Keep {
			action = p.Colorize(ui.Warn, action)
		}
		rows = append(rows, []string{ch.Service, action, why, send})
	}
	p.Table([]string{"SERVICE", "ACTION", "WHY", "IMAGE TO SEND"}, rows)
	if !res.Changes.Changed() && len(res.Send) == 0 {
		p.Line(ui.OK, "plan", "%s on %s is up to date: a promote would replace nothing and send nothing", cat.Project.Name, env.Name)
		return res, nil
	}
	p.Line(ui.Info, "plan", "%s; %d image(s) to send, %s", res.Changes.Summary(), len(res.Send), ui.Bytes(res.Bytes))
	return res, ErrChanges
}
