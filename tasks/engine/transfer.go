package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sync/errgroup"

	"github.com/maestro-platform/deploy/tasks/ui"
)

// TransferReport says what Transfer did.
type TransferReport struct {
	// Sent are the refs copied to the destination; Present those it
	// already had (same image ID), at most re-tagged.
	Sent, Present []string
	// Bytes is what was streamed to the destination: the compressed
	// archive of the sent images.
	Bytes int64
	// LayersSent and LayerBytes are the layers the archive held and their
	// size before compression; LayersSkipped and SkippedBytes those left
	// out because the destination had them already.
	LayersSent, LayersSkipped int
	LayerBytes, SkippedBytes  int64
}

// Transfer makes every ref (as found on src) exist on dst with the same
// image ID and tag. Images dst already has are not sent. The others go in
// one `docker save` stream from src, rewritten on the way into an archive
// that holds only the layers dst lacks, gzip-compressed, straight into
// `docker load` on dst: nothing is written to the remote disk but the new
// layers. A base image of hundreds of megabytes travels once; after that a
// change sends its own layers.
//
// Leaving layers out relies on the engine's loader, which takes a layer
// from its own store when it has the same chain (the layer on the same
// parents) and only then opens the archive's copy (moby's tarexport, as
// since Docker 1.10). Should dst lose a layer between the question and the
// load (a prune), the load fails and is tried once more with every layer.
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
	plan, err := planFor(ctx, src, dst, missing)
	if err != nil {
		return rep, err
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
	var sent int64
	a.ProgressFunc(func(elapsed time.Duration) string { return rate(atomic.LoadInt64(&sent), elapsed) })
	err = stream(ctx, src, dst, missing, plan, rep, &sent)
	if err != nil && len(plan.skip) > 0 && ctx.Err() == nil {
		p.Line(ui.Warn, "images", "the load on %s failed with layers left out (%v): sending every layer", dst.Host, err)
		plan.skip = nil
		err = stream(ctx, src, dst, missing, plan, rep, &sent)
	}
	if err != nil {
		return rep, err
	}
	for _, ref := range missing {
		got, err := dst.ImageID(ctx, ref)
		if err != nil || got != ids[ref] {
			return rep, fmt.Errorf("transfer %s: after load, %s has %q, want image %s (%v)", ref, dst.Host, got, ids[ref], err)
		}
		rep.Sent = append(rep.Sent, ref)
	}
	ok = true
	a.Done(ui.OK, "sent %d image(s) to %s in %s: %s", len(rep.Sent), dst.Host, ui.Seconds(time.Since(t0)), rep.layers())
	return rep, nil
}

// layers says what went and what stayed: "2 new layers, 1.2 MB (310.5 kB
// compressed); 3 layers already there, 104.9 MB".
func (r *TransferReport) layers() string {
	s := fmt.Sprintf("%d new layer(s), %s (%s compressed)", r.LayersSent, ui.Bytes(r.LayerBytes), ui.Bytes(r.Bytes))
	if r.LayersSkipped > 0 {
		s += fmt.Sprintf("; %d layer(s) already there, %s", r.LayersSkipped, ui.Bytes(r.SkippedBytes))
	}
	return s
}

// planFor is planLayers; a test makes it leave out a layer the
// destination lacks, to see the load tried again with every layer.
var planFor = planLayers

// layerPlan says which layers of the images to send the archive holds.
type layerPlan struct {
	// layers are the diff IDs of every layer of the images to send;
	// skip those the destination has in the same chain in every image
	// that uses them.
	layers, skip map[digest.Digest]bool
}

// planLayers asks src for the layers of the images to send and dst for
// every layer chain it holds.
func planLayers(ctx context.Context, src, dst *Engine, refs []string) (layerPlan, error) {
	have, err := dst.layerChains(ctx)
	if err != nil {
		return layerPlan{}, fmt.Errorf("transfer: which layers %s has: %w", dst.Host, err)
	}
	plan := layerPlan{layers: map[digest.Digest]bool{}, skip: map[digest.Digest]bool{}}
	need := map[digest.Digest]bool{}
	for _, ref := range refs {
		diffIDs, err := src.diffIDs(ctx, ref)
		if err != nil {
			return layerPlan{}, fmt.Errorf("transfer %s: its layers on %s: %w", ref, src.Host, err)
		}
		for i, chain := range identity.ChainIDs(slices.Clone(diffIDs)) {
			plan.layers[diffIDs[i]] = true
			if !have[chain] {
				need[diffIDs[i]] = true
			}
		}
	}
	for d := range plan.layers {
		if !need[d] {
			plan.skip[d] = true
		}
	}
	return plan, nil
}

// diffIDs are the layers of the image ref, bottom first.
func (e *Engine) diffIDs(ctx context.Context, ref string) ([]digest.Digest, error) {
	img, err := e.API.ImageInspect(ctx, ref)
	if err != nil {
		return nil, err
	}
	var ds []digest.Digest
	for _, l := range img.RootFS.Layers {
		d, err := digest.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", l, err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// layerChains are the chain IDs of every layer the engine's images use: a
// layer the engine has is a layer of one of its images, for it removes the
// others with the last image using them. The top-level images are enough:
// a build's intermediate images only share their layers.
func (e *Engine) layerChains(ctx context.Context) (map[digest.Digest]bool, error) {
	list, err := e.API.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, err
	}
	have := map[digest.Digest]bool{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	// A few at a time: every inspection is a request over the one
	// connection to a remote engine.
	g.SetLimit(4)
	for _, img := range list.Items {
		g.Go(func() error {
			ds, err := e.diffIDs(gctx, img.ID)
			if IsNotFound(err) {
				return nil // removed meanwhile
			}
			if err != nil {
				return fmt.Errorf("image %s: %w", img.ID, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range identity.ChainIDs(ds) {
				have[c] = true
			}
			return nil
		})
	}
	return have, g.Wait()
}

// stream saves refs on src and loads them on dst through an archive
// rewritten by pack, counting in *sent the compressed bytes dst has read
// and adding to rep what was sent and skipped.
func stream(ctx context.Context, src, dst *Engine, refs []string, plan layerPlan, rep *TransferReport, sent *int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the save stream if the load fails early
	saved, err := src.API.ImageSave(ctx, refs)
	if err != nil {
		return fmt.Errorf("transfer: save on %s: %w", src.Host, err)
	}
	defer saved.Close()
	pr, pw := io.Pipe()
	var counts packCounts
	packed := make(chan error, 1)
	go func() {
		err := pack(pw, saved, plan, &counts)
		pw.CloseWithError(err)
		packed <- err
	}()
	cr := &countingReader{r: pr, n: sent}
	loaded, err := dst.API.ImageLoad(ctx, cr, client.ImageLoadWithQuiet(true))
	if err == nil {
		err = StreamError(loaded)
		loaded.Close()
	}
	pr.CloseWithError(errors.New("the load ended")) // unblocks pack if the load stopped reading
	perr := <-packed
	rep.Bytes = atomic.LoadInt64(sent)
	rep.LayersSent, rep.LayerBytes = counts.sent, counts.sentBytes
	rep.LayersSkipped, rep.SkippedBytes = counts.skipped, counts.skippedBytes
	switch {
	case perr != nil && err == nil:
		return fmt.Errorf("transfer: reading the images saved on %s: %w", src.Host, perr)
	case err != nil:
		return fmt.Errorf("transfer: load on %s after %s: %w", dst.Host, ui.Bytes(rep.Bytes), err)
	}
	return nil
}

// packCounts are the layers pack put in the archive and left out.
type packCounts struct {
	sent, skipped           int
	sentBytes, skippedBytes int64
}

// spoolInMemory is the largest file of a saved archive pack holds in memory
// while it learns whether the file is a layer to leave out; larger ones
// wait in a temporary file.
const spoolInMemory = 8 << 20

// pack copies the saved archive r to w gzip-compressed, leaving out the
// files that are layers in plan.skip. A layer is known by the digest of its
// content (its diff ID: `docker save` writes layers uncompressed), so each
// file is read whole before its entry is written.
func pack(w io.Writer, r io.Reader, plan layerPlan, c *packCounts) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || h.Size == 0 {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		body, d, err := spool(tr, h.Size)
		if err != nil {
			return err
		}
		if plan.skip[d] {
			c.skipped++
			c.skippedBytes += h.Size
			body.Close()
			continue
		}
		if plan.layers[d] {
			c.sent++
			c.sentBytes += h.Size
		}
		err = tw.WriteHeader(h)
		if err == nil {
			_, err = io.Copy(tw, body)
		}
		body.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// spool reads n bytes of r and returns them to be read again, with their
// digest.
func spool(r io.Reader, n int64) (io.ReadCloser, digest.Digest, error) {
	dg := digest.Canonical.Digester()
	if n <= spoolInMemory {
		b, err := io.ReadAll(io.TeeReader(io.LimitReader(r, n), dg.Hash()))
		return io.NopCloser(bytes.NewReader(b)), dg.Digest(), err
	}
	f, err := os.CreateTemp("", "maestro-transfer-")
	if err != nil {
		return nil, "", err
	}
	os.Remove(f.Name()) // gone when closed, whatever happens
	if _, err := io.Copy(io.MultiWriter(f, dg.Hash()), io.LimitReader(r, n)); err != nil {
		f.Close()
		return nil, "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, "", err
	}
	return f, dg.Digest(), nil
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
	n *int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	atomic.AddInt64(c.n, int64(n))
	return n, err
}
