package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	patternSize    = 8 << 20 // random bytes generated once per run
	rssInterval    = 50 * time.Millisecond
	bigBlobIDBase  = 1
	smallImageID   = 100
	manyLayersBase = 1000
)

// target is one registry under test and what has been pushed to it so far.
type target struct {
	targetSpec
	c         *client
	bigDigest string // a large blob already pushed, for the pull benchmark
	smallRepo map[string]bool
}

// image is a generated OCI image: layers, config and manifest, with digests computed once.
type image struct {
	layers       [][]byte
	layerDigests []string
	config       []byte
	configDigest string
	manifest     []byte
}

// runner holds the data shared by every target of a run.
type runner struct {
	cfg   *config
	rep   *report
	log   io.Writer
	runID string
	pat   *pattern
	big   map[uploadMode]blob   // the large blob of each upload mode
	bigD  map[uploadMode]string // and its digest
	// pullMode is the upload mode whose blob the pull benchmark pushes when push did not run.
	pullMode uploadMode
	many     *image // the many-layer image
	small    *image // a one-layer image for the manifest and tag benchmarks
}

// runAll prepares the data, then runs each selected benchmark on every target in turn.
func runAll(ctx context.Context, cfg *config, command string, log io.Writer) (*report, error) {
	seed, runID := newRunID()
	r := &runner{cfg: cfg, log: log, runID: runID, big: map[uploadMode]blob{}, bigD: map[uploadMode]string{}}
	var names []string
	var targets []*target
	for _, ts := range cfg.targets {
		c, err := newClient(ts.url, cfg.conns)
		if err != nil {
			return nil, err
		}
		names = append(names, ts.name)
		targets = append(targets, &target{targetSpec: ts, c: c, smallRepo: map[string]bool{}})
	}
	r.rep = newReport(command, names)
	r.rep.Notes = append(r.rep.Notes, environment(), "run id "+runID+", repositories "+r.repo("…"))
	for _, t := range targets {
		pid := "no pid, no memory metrics"
		if t.pid > 0 {
			pid = "pid " + strconv.Itoa(t.pid)
		}
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: %s (%s)", t.name, t.url, pid))
	}
	r.rep.Notes = append(r.rep.Notes, "MiB = 2^20 bytes; medians where runs are repeated; RSS is the server's, from /proc")

	start := time.Now()
	r.pat = newPattern(patternSize, seed)
	if cfg.run["push"] || cfg.run["pull"] {
		modes := cfg.pushModes
		if !cfg.run["push"] || len(modes) == 0 {
			modes = []uploadMode{modeStream}
		}
		r.pullMode = modes[0]
		for i, m := range modes {
			b := blob{p: r.pat, id: bigBlobIDBase + uint64(i), size: cfg.layerSize}
			r.big[m], r.bigD[m] = b, b.digest()
		}
	}
	r.many = newImage(r.pat, manyLayersBase, cfg.layers, cfg.smallSize)
	r.small = newImage(r.pat, smallImageID, 1, 4<<10)
	fmt.Fprintf(log, "prepared data in %s (run id %s)\n", time.Since(start).Round(time.Millisecond), runID)

	benches := map[string]func(context.Context, *target) error{
		"push": r.benchPush, "pull": r.benchPull, "image": r.benchImage, "manifest": r.benchManifest, "tags": r.benchTags,
		"catalog": r.benchCatalog,
	}
	var failed error
	for _, name := range benchmarks {
		if !cfg.run[name] {
			continue
		}
		for _, t := range targets {
			fmt.Fprintf(log, "%s: %s…\n", t.name, name)
			bstart, cpu := time.Now(), cpuTime()
			serverCPU, cpuErr := processCPU(t.pid)
			err := benches[name](ctx, t)
			if after, aerr := processCPU(t.pid); t.pid > 0 && cpuErr == nil && aerr == nil {
				r.rep.set(t.name, "server_cpu_"+name, "server CPU time, "+name+" benchmark (s)", 2, (after - serverCPU).Seconds())
			}
			fmt.Fprintf(log, "%s: %s done in %s (tool CPU %s)\n", t.name, name,
				time.Since(bstart).Round(time.Millisecond), (cpuTime() - cpu).Round(time.Millisecond))
			if err == nil {
				continue
			}
			err = fmt.Errorf("%s: %s: %w", t.name, name, err)
			r.rep.fail(t.name, name+"_error", name+" failed", err)
			r.rep.Notes = append(r.rep.Notes, "ERROR "+err.Error())
			if !cfg.keepGoing || ctx.Err() != nil {
				return r.rep, err
			}
			fmt.Fprintln(log, "bench:", err)
			failed = fmt.Errorf("some benchmarks failed")
		}
	}
	return r.rep, failed
}

// repo names the repository a benchmark uses in this run.
func (r *runner) repo(bench string) string { return r.cfg.repo + "/" + r.runID + "/" + bench }

// settle flushes dirty pages to disk, untimed, so that a large transfer does not pay for the
// writeback of the previous one (or of another target's). Where it may (as root), it also drops
// the clean page cache: on a virtual machine, page cache that earlier transfers filled makes
// the next writer's page allocations markedly slower, which would favour whichever target runs
// first.
func (r *runner) settle() {
	if r.cfg.sync {
		syscall.Sync()
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0) // best effort
	}
}

// mibps converts bytes over a duration to MiB/s.
func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchPush uploads the large blob once per upload mode, timing each, and watches the server's memory.
func (r *runner) benchPush(ctx context.Context, t *target) error {
	size := formatSize(r.cfg.layerSize)
	if t.pid > 0 {
		if rss, err := statusKiB(t.pid, "VmRSS"); err == nil {
			r.rep.set(t.name, "rss_idle", "server RSS before the pushes (MiB)", 1, float64(rss)/1024)
		}
	}
	label := map[uploadMode]string{
		modeStream:     "push " + size + " (docker: POST, one PATCH, PUT) (MiB/s)",
		modeMonolithic: "push " + size + ", monolithic PUT (MiB/s)",
		modeChunked:    "push " + size + ", PATCH " + formatSize(r.cfg.chunkSize) + " chunks (MiB/s)",
	}
	for _, mode := range r.cfg.pushModes {
		r.rep.row("push_"+string(mode), label[mode], 1) // throughput rows first, memory rows after
	}
	for _, mode := range r.cfg.pushModes {
		b := r.big[mode]
		r.settle()
		var sampler *rssSampler
		if t.pid > 0 {
			if err := resetPeakRSS(t.pid); err != nil {
				r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: cannot reset VmHWM (%v); peak RSS is the process lifetime's", t.name, err))
			}
			sampler = sampleRSS(t.pid, rssInterval)
		}
		start := time.Now()
		err := t.c.pushBlob(ctx, r.repo("big"), r.bigD[mode], b.reader(), b.size, mode, r.cfg.chunkSize)
		elapsed := time.Since(start)
		var sampled int64
		if sampler != nil {
			sampled = sampler.Stop()
		}
		if err != nil {
			return fmt.Errorf("%s upload: %w", mode, err)
		}
		r.rep.set(t.name, "push_"+string(mode), label[mode], 1, mibps(b.size, elapsed))
		if t.pid > 0 {
			if hwm, err := statusKiB(t.pid, "VmHWM"); err == nil {
				r.rep.set(t.name, "rss_hwm_"+string(mode), "server peak RSS (VmHWM), "+string(mode)+" push (MiB)", 1, float64(hwm)/1024)
			}
			r.rep.set(t.name, "rss_sampled_"+string(mode), "server max sampled VmRSS, "+string(mode)+" push (MiB)", 1, float64(sampled)/1024)
		}
		if t.bigDigest == "" {
			t.bigDigest = r.bigD[mode]
		}
	}
	return nil
}

// benchPull downloads the large blob, discarding it, and reports the median throughput.
func (r *runner) benchPull(ctx context.Context, t *target) error {
	repo := r.repo("big")
	if t.bigDigest == "" {
		m := r.pullMode
		if err := t.c.pushBlob(ctx, repo, r.bigD[m], r.big[m].reader(), r.cfg.layerSize, m, r.cfg.chunkSize); err != nil {
			return fmt.Errorf("pushing the blob to pull: %w", err)
		}
		t.bigDigest = r.bigD[m]
	}
	buf := make([]byte, 1<<20)
	var runs []float64
	r.settle()
	for range r.cfg.pullRuns {
		start := time.Now()
		n, err := t.c.getBlob(ctx, repo, t.bigDigest, buf)
		elapsed := time.Since(start)
		if err != nil {
			return err
		}
		if n != r.cfg.layerSize {
			return fmt.Errorf("GET blob %s: %d bytes, want %d", t.bigDigest, n, r.cfg.layerSize)
		}
		runs = append(runs, mibps(n, elapsed))
	}
	r.rep.set(t.name, "pull", fmt.Sprintf("pull %s (MiB/s, median of %d)", formatSize(r.cfg.layerSize), len(runs)), 1, median(runs))
	return nil
}

// benchImage pushes then pulls the many-layer image the way docker does, with docker's concurrency.
func (r *runner) benchImage(ctx context.Context, t *target) error {
	repo, im := r.repo("image"), r.many
	label := fmt.Sprintf("%d × %s layers", len(im.layers), formatSize(r.cfg.smallSize))
	start := time.Now()
	err := parallel(ctx, r.cfg.pushConc, len(im.layers), func(ctx context.Context, _, i int) error {
		return t.c.pushBytes(ctx, repo, im.layerDigests[i], im.layers[i])
	})
	if err == nil {
		err = t.c.pushBytes(ctx, repo, im.configDigest, im.config)
	}
	if err == nil {
		err = t.c.putManifest(ctx, repo, "v1", im.manifest)
	}
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	r.rep.set(t.name, "image_push", fmt.Sprintf("push image, %s, %d parallel (s)", label, r.cfg.pushConc), 3, time.Since(start).Seconds())

	start = time.Now()
	var mbuf bytes.Buffer
	if err := t.c.getManifest(ctx, repo, "v1", &mbuf); err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(mbuf.Bytes(), &m); err != nil {
		return fmt.Errorf("GET manifest v1: %w", err)
	}
	if len(m.Layers) != len(im.layers) {
		return fmt.Errorf("GET manifest v1: %d layers, want %d", len(m.Layers), len(im.layers))
	}
	bufs := make([][]byte, r.cfg.pullConc)
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	get := func(ctx context.Context, w int, d descriptor) error {
		n, err := t.c.getBlob(ctx, repo, d.Digest, bufs[w])
		if err == nil && n != d.Size {
			err = fmt.Errorf("GET blob %s: %d bytes, want %d", d.Digest, n, d.Size)
		}
		return err
	}
	if err := get(ctx, 0, m.Config); err != nil {
		return err
	}
	err = parallel(ctx, r.cfg.pullConc, len(m.Layers), func(ctx context.Context, w, i int) error {
		return get(ctx, w, m.Layers[i])
	})
	if err != nil {
		return err
	}
	r.rep.set(t.name, "image_pull", fmt.Sprintf("pull image, %s, %d parallel (s)", label, r.cfg.pullConc), 3, time.Since(start).Seconds())
	return nil
}

// pushSmallImage puts the one-layer image's blobs into repo, once per target.
func (r *runner) pushSmallImage(ctx context.Context, t *target, repo string) error {
	if t.smallRepo[repo] {
		return nil
	}
	if err := t.c.pushBytes(ctx, repo, r.small.layerDigests[0], r.small.layers[0]); err != nil {
		return err
	}
	if err := t.c.pushBytes(ctx, repo, r.small.configDigest, r.small.config); err != nil {
		return err
	}
	t.smallRepo[repo] = true
	return nil
}

// benchManifest GETs one small manifest by tag from many connections for a fixed time.
func (r *runner) benchManifest(ctx context.Context, t *target) error {
	repo := r.repo("manifest")
	if err := r.pushSmallImage(ctx, t, repo); err != nil {
		return err
	}
	if err := t.c.putManifest(ctx, repo, "latest", r.small.manifest); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	conns := r.cfg.conns
	lat := make([][]time.Duration, conns)
	var warm, wg sync.WaitGroup
	warm.Add(conns)
	begin := make(chan struct{})
	var deadline time.Time
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			// One untimed request opens this worker's connection.
			err := t.c.getManifest(ctx, repo, "latest", &buf)
			warm.Done()
			if err != nil {
				cancel(err)
				return
			}
			<-begin
			l := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				s := time.Now()
				if err := t.c.getManifest(ctx, repo, "latest", &buf); err != nil {
					cancel(err)
					return
				}
				l = append(l, time.Since(s))
				if buf.Len() != len(r.small.manifest) {
					cancel(fmt.Errorf("GET manifest: %d bytes, want %d", buf.Len(), len(r.small.manifest)))
					return
				}
			}
			lat[w] = l
		}()
	}
	warm.Wait()
	start, cpu := time.Now(), cpuTime()
	deadline = start.Add(r.cfg.duration)
	close(begin)
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	if err := context.Cause(ctx); err != nil {
		return err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	label := fmt.Sprintf("manifest GET, %d conns, %s", conns, r.cfg.duration)
	r.rep.set(t.name, "manifest_rps", label+" (req/s)", 0, float64(len(all))/elapsed.Seconds())
	r.rep.set(t.name, "manifest_p50", label+", p50 (ms)", 2, ms(percentile(all, 0.50)))
	r.rep.set(t.name, "manifest_p99", label+", p99 (ms)", 2, ms(percentile(all, 0.99)))
	r.rep.set(t.name, "manifest_tool_cpu", label+", the load tool's own CPU (cores)", 2, cpu.Seconds()/elapsed.Seconds())
	return nil
}

// benchTags pushes many tags onto one repository, then times a full listing and a paginated walk.
func (r *runner) benchTags(ctx context.Context, t *target) error {
	repo, n := r.repo("tags"), r.cfg.tags
	if err := r.pushSmallImage(ctx, t, repo); err != nil {
		return err
	}
	start := time.Now()
	err := parallel(ctx, r.cfg.tagConc, n, func(ctx context.Context, _, i int) error {
		return t.c.putManifest(ctx, repo, strconv.Itoa(i+1), r.small.manifest)
	})
	if err != nil {
		return fmt.Errorf("pushing tags: %w", err)
	}
	r.rep.set(t.name, "tags_push", fmt.Sprintf("push %d tags, %d parallel (s)", n, r.cfg.tagConc), 2, time.Since(start).Seconds())

	for _, l := range []struct {
		key, label, query string
	}{
		{"tags_list", fmt.Sprintf("tags/list of %d tags, one GET (ms, median of %d)", n, r.cfg.listRuns), ""},
		{"tags_walk", fmt.Sprintf("tags/list walk, n=%d following Link (ms, median of %d)", r.cfg.page, r.cfg.listRuns), fmt.Sprintf("?n=%d", r.cfg.page)},
	} {
		var runs []float64
		for range r.cfg.listRuns {
			start := time.Now()
			tags, pages, err := t.c.listNames(ctx, "/v2/"+repo+"/tags/list"+l.query, "tags")
			elapsed := time.Since(start)
			if err != nil {
				return err
			}
			if err := checkTags(tags, n); err != nil {
				return fmt.Errorf("tag list%s (%d pages): %w", l.query, pages, err)
			}
			if l.query == "" && pages > 1 && len(runs) == 0 {
				r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: tags/list without n answered in %d pages (Link followed, time included)", t.name, pages))
			}
			runs = append(runs, ms(elapsed))
		}
		r.rep.set(t.name, l.key, l.label, 1, median(runs))
	}
	return nil
}

// checkTags verifies that tags holds "1" … "n", each exactly once.
func checkTags(tags []string, n int) error {
	seen := make([]bool, n+1)
	for _, tag := range tags {
		i, err := strconv.Atoi(tag)
		if err != nil || i < 1 || i > n || strconv.Itoa(i) != tag {
			return fmt.Errorf("unexpected tag %q", tag)
		}
		if seen[i] {
			return fmt.Errorf("tag %q listed twice", tag)
		}
		seen[i] = true
	}
	if len(tags) != n {
		return fmt.Errorf("%d tags listed, want %d", len(tags), n)
	}
	return nil
}

// parallel runs fn for i in [0, n) on workers goroutines; w is the worker's index. The first
// error cancels the others and is returned.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// median returns the middle value (the mean of the two middle ones for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the nearest-rank q-quantile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// descriptor and manifest are the parts of an OCI image manifest the benchmark writes and reads.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// newImage generates an image of n distinct uncompressed layers of size bytes.
func newImage(p *pattern, firstID uint64, n int, size int64) *image {
	im := &image{}
	m := manifest{SchemaVersion: 2, MediaType: mediaManifest, Layers: []descriptor{}}
	for i := range n {
		b := blob{p: p, id: firstID + uint64(i), size: size}
		data := b.bytes()
		d := digestBytes(data)
		im.layers, im.layerDigests = append(im.layers, data), append(im.layerDigests, d)
		m.Layers = append(m.Layers, descriptor{MediaType: mediaLayer, Digest: d, Size: size})
	}
	// Uncompressed layers: each diff_id is the layer's digest.
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": im.layerDigests},
	}
	im.config, _ = json.Marshal(cfg) // maps of strings always marshal
	im.configDigest = digestBytes(im.config)
	m.Config = descriptor{MediaType: mediaConfig, Digest: im.configDigest, Size: int64(len(im.config))}
	im.manifest, _ = json.Marshal(m)
	return im
}
