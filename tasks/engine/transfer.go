package engine

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/client"
)

// TransferReport says what Transfer did.
type TransferReport struct {
	// Sent are the refs copied to the destination; Present those it
	// already had (same image ID), at most re-tagged.
	Sent, Present []string
	// Bytes is the size of the image archive streamed.
	Bytes int64
}

// Transfer makes every ref (as found on src) exist on dst with the same
// image ID and tag. Images dst already has are not sent; the others go in
// one `docker save` stream from src straight into `docker load` on dst, so
// layers shared between them travel once and nothing is written to disk.
func Transfer(ctx context.Context, src, dst *Engine, refs []string, p *ui.Printer) (*TransferReport, error) {
	if p == nil {
		p = ui.Plain(io.Discard)
	}
	rep := &TransferReport{}
	ids := map[string]string{}
	var missing []string
	for _, ref := range refs {
		id, err := src.ImageID(ctx, ref)
		if err != nil {
			return rep, fmt.Errorf("transfer %s: not on the source engine (build it first): %w", ref, err)
		}
		ids[ref] = id
		have, err := dst.API.ImageInspect(ctx, id)
		switch {
		case err == nil:
			if !slices.Contains(have.RepoTags, ref) {
				if _, err := dst.API.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: ref}); err != nil {
					return rep, fmt.Errorf("transfer %s: tag on %s: %w", ref, dst.Host, err)
				}
			}
			rep.Present = append(rep.Present, ref)
			p.Line(ui.Skip, ref, "already on %s", dst.Host)
		case IsNotFound(err):
			missing = append(missing, ref)
		default:
			return rep, fmt.Errorf("transfer %s: inspect on %s: %w", ref, dst.Host, err)
		}
	}
	if len(missing) == 0 {
		return rep, nil
	}

	t0 := time.Now()
	// A live line while the images stream: bytes sent and the rate.
	a := p.Start("images", fmt.Sprintf("sending %s to %s", strings.Join(missing, ", "), dst.Host))
	ok := false
	defer func() {
		if !ok {
			a.Done(ui.Fail, "transfer failed after %s, %s sent", ui.Seconds(time.Since(t0)), ui.Bytes(rep.Bytes))
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the save stream if the load fails early
	saved, err := src.API.ImageSave(ctx, missing)
	if err != nil {
		return rep, fmt.Errorf("transfer: save on %s: %w", src.Host, err)
	}
	defer saved.Close()
	cr := &countingReader{r: saved}
	// Bytes and rate as of each time the line is shown: a stalled stream
	// shows its rate falling.
	a.ProgressFunc(func(elapsed time.Duration) string { return rate(cr.n.Load(), elapsed) })
	loaded, err := dst.API.ImageLoad(ctx, cr, client.ImageLoadWithQuiet(true))
	if err != nil {
		rep.Bytes = cr.n.Load()
		return rep, fmt.Errorf("transfer: load on %s: %w", dst.Host, err)
	}
	lerr := StreamError(loaded)
	loaded.Close()
	rep.Bytes = cr.n.Load()
	if lerr != nil {
		return rep, fmt.Errorf("transfer: load on %s after %s: %w", dst.Host, ui.Bytes(rep.Bytes), lerr)
	}
	for _, ref := range missing {
		got, err := dst.ImageID(ctx, ref)
		if err != nil || got != ids[ref] {
			return rep, fmt.Errorf("transfer %s: after load, %s has %q, want image %s (%v)", ref, dst.Host, got, ids[ref], err)
		}
		rep.Sent = append(rep.Sent, ref)
	}
	ok = true
	a.Done(ui.OK, "sent %d image(s), %s in %s", len(rep.Sent), ui.Bytes(rep.Bytes), ui.Seconds(time.Since(t0)))
	return rep, nil
}

// rate is the progress of a transfer: "12.3 MB sent, 4.1 MB/s".
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return ui.Bytes(n) + " sent"
	}
	return fmt.Sprintf("%s sent, %s/s", ui.Bytes(n), ui.Bytes(int64(float64(n)/d.Seconds())))
}

// countingReader counts what the load has read of the save stream.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
