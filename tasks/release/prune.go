package release

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Pruned is what a prune removed from a host.
type Pruned struct {
	// Images are the references (or short IDs) removed.
	Images []string
	// Freed is the disk space the engine's images took less afterwards
	// (-1 when the engine would not say).
	Freed int64
}

// Prune removes from the host of opts.Env the images of the catalog's
// services that no release kept there uses and no container was made
// from, and says what it freed. It holds the environment's lock, so that
// no promote sees its images go.
func Prune(ctx context.Context, cat *catalog.Catalog, opts Options) (*Pruned, error) {
	t, lock, err := openHost(ctx, cat, &opts, "prune", true)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	defer lock.Release()
	nodes, err := t.swarmNodes(ctx) // nil but on a swarm
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", t.env.Name, err)
	}
	defer nodes.Close()
	res, err := t.pruneImages(ctx, opts, nodes)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", t.env.Name, err)
	}
	return res, nil
}

// imageLine finds the images a release's compose or stack file names.
var imageLine = regexp.MustCompile(`(?m)^\s*image:\s*["']?([^"'\s]+)`)

// pruneImages removes the service images no kept release uses from the
// host's engine, or from every reached node of a swarm; the caller holds
// the lock.
func (t *target) pruneImages(ctx context.Context, opts Options, nodes *swarmNodes) (*Pruned, error) {
	t0 := time.Now()
	st, err := t.fs.List(ctx)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, id := range st.Releases {
		if rec, _, err := record.LoadRelease(opts.LocalDeployDir, t.env.Name, id); err == nil {
			for _, v := range rec.ImageIDs {
				keep[v] = true
			}
			for _, v := range rec.Images {
				keep[v] = true
			}
			continue
		}
		// Shipped from elsewhere: its files say which images it runs.
		files, err := t.fs.Fetch(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("release %s, shipped from elsewhere: %w (nothing was removed)", id, err)
		}
		for _, f := range files {
			for _, m := range imageLine.FindAllSubmatch(f.Data, -1) {
				keep[string(m[1])] = true
			}
		}
	}
	repos := map[string]bool{}
	for _, s := range t.cat.All() {
		repos[t.cat.ImageRepo(s)] = true
	}
	engines := []*engine.Engine{t.eng}
	if nodes != nil {
		engines = engines[:0]
		for _, c := range nodes.conns {
			engines = append(engines, c.eng)
		}
	}
	res := &Pruned{}
	for _, eng := range engines {
		r, err := t.pruneOn(ctx, eng, keep, repos)
		if err != nil {
			return nil, err
		}
		res.Images = append(res.Images, r.Images...)
		if r.Freed < 0 || res.Freed < 0 {
			res.Freed = -1
		} else {
			res.Freed += r.Freed
		}
	}
	if len(res.Images) == 0 {
		t.p.Line(ui.OK, "prune", "nothing to remove: every image of %s's services on %s is used by one of its %d kept releases",
			t.cat.Project.Name, t.env.Name, len(st.Releases))
		return res, nil
	}
	freed := "how much the engine would not say"
	if res.Freed >= 0 {
		freed = ui.Bytes(res.Freed) + " freed"
	}
	where := ""
	if len(engines) > 1 {
		where = fmt.Sprintf(" on %d nodes", len(engines))
	}
	t.p.Line(ui.OK, "prune", "removed %d image(s) no kept release uses%s (%s), %s, in %s", len(res.Images), where,
		strings.Join(res.Images, ", "), freed, ui.Seconds(time.Since(t0)))
	return res, nil
}

// pruneOn removes from one engine the images of repos that keep does not
// name (by ID or reference) and no container there was made from.
func (t *target) pruneOn(ctx context.Context, eng *engine.Engine, keep, repos map[string]bool) (*Pruned, error) {
	cs, err := eng.API.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("containers on %s: %w", eng.Host, err)
	}
	used := map[string]bool{}
	for _, c := range cs.Items {
		used[c.ImageID] = true
	}
	imgs, err := eng.API.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("images on %s: %w", eng.Host, err)
	}
	var drop []string
	names := map[string]string{}
	for _, im := range imgs.Items {
		ours, kept := false, keep[im.ID] || used[im.ID]
		for _, tag := range im.RepoTags {
			if i := strings.LastIndexByte(tag, ':'); i > 0 && repos[tag[:i]] {
				ours = true
				names[im.ID] = ui.Clean(tag)
			}
			kept = kept || keep[tag]
		}
		if ours && !kept {
			drop = append(drop, im.ID)
		}
	}
	res := &Pruned{}
	if len(drop) == 0 {
		return res, nil
	}
	before, berr := eng.API.DiskUsage(ctx, client.DiskUsageOptions{Images: true})
	for _, id := range drop {
		// Not forced: an image a container was made from since the list
		// stays.
		if _, err := eng.API.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !engine.IsNotFound(err) {
			t.p.Line(ui.Warn, "prune", "%s kept on %s: %v", names[id], eng.Host, firstLine(err))
			continue
		}
		res.Images = append(res.Images, names[id])
	}
	after, aerr := eng.API.DiskUsage(ctx, client.DiskUsageOptions{Images: true})
	res.Freed = -1
	if berr == nil && aerr == nil {
		res.Freed = max(before.Images.TotalSize-after.Images.TotalSize, 0)
	}
	return res, nil
}
