package hostfs

import (
	"context"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
)

// OpenVersion opens dir as Open does, through another build of the release
// tool: an image that differs from this version's by a label, so with a
// tag, an image and an agent of its own, as a teammate's checkout of
// another commit would have.
func OpenVersion(ctx context.Context, eng *engine.Engine, dir, project, env, version string) (*FS, error) {
	img := toolImage
	img.Labels = map[string]string{labels.Tool: "1", labels.ToolRevision: "test-" + version}
	return open(ctx, eng, dir, project, env, img)
}
