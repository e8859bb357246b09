package gc_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/registry"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// The benchmark's registry: benchRepos repositories of benchPairs pairs of
// manifests. Each pair is a kept manifest (tagged) and a garbage one
// (untagged). The kept one references a config and 9 layers of its own;
// the garbage one a config and 9 layers of its own, one layer of its kept
// twin and one layer of the kept manifest of the same pair in the next
// repository (linked into this repository as a cross-repository mount
// would). So 100,000 blobs, half of them referenced only by garbage, and
// 10,000 manifests, half of them garbage.
const (
	benchRepos     = 10
	benchPairs     = 500
	benchOwnBlobs  = 10   // config + 9 layers, per manifest
	benchSeedBatch = 2000 // statements' worth of rows per seeding transaction, about
)

var (
	benchPullers  = flag.Int("gc.pullers", 16, "BenchmarkGC: concurrent pullers during the run (0: none, and no baseline)")
	benchBaseline = flag.Duration("gc.baseline", 30*time.Second, "BenchmarkGC: longest baseline of pulls before the run")
)

// BenchmarkGC measures one collection of a registry of 100,000 blobs and
// 10,000 manifests, half of each garbage, with an untagged policy, on
// SQLite and on PostgreSQL: the run's duration (ns/op), the Go heap's peak
// while it runs, what it deleted, and the latency of concurrent pullers (a
// manifest GET by tag, then a GET of one of its blobs, over loopback HTTP,
// as fast as they can) while it runs, against the same pulls just before
// it, over a stretch as long as the run but at most -gc.baseline (the
// pulls are the same before and during, so a shorter baseline only has
// fewer samples). Each iteration seeds a fresh registry with the timer
// stopped, which takes about as long as the run, so run it once:
//
//	go test -run '^$' -bench GC -benchtime=1x ./gc
//	go test -run '^$' -bench GC -benchtime=1x ./gc -gc.pullers=0   # the run alone
//
// LinkDeadline is 10ms, not the default minute: the sweep sleeps it once
// between deleting bytes and forgetting their rows, which would otherwise
// be most of the run. Grace and Untagged are 1ns, so that everything the
// seeding wrote is old enough to collect; the benchmark fails unless the
// report deletes exactly the garbage it seeded and no pull failed.
//
// The heap figures are of the whole test process (collector, registry,
// pullers; SQLite's page cache is outside the Go heap, PostgreSQL is a
// process of its own): peak-heap is the most allocated at once (HeapAlloc),
// peak-live the most a garbage collection found live. The collector's CPU
// time is labeled phase=gc in a CPU profile:
//
//	go test -run '^$' -bench GC/sqlite -benchtime=1x -cpuprofile cpu.out ./gc
//	go tool pprof -tagfocus phase=gc gc.test cpu.out
func BenchmarkGC(b *testing.B) {
	for _, be := range []struct {
		name    string
		options func(b *testing.B) metadata.Options
	}{
		{"sqlite", func(b *testing.B) metadata.Options {
			return metadata.Options{SQLitePath: filepath.Join(b.TempDir(), "m.db")}
		}},
		{"postgres", func(b *testing.B) metadata.Options { return metadata.Options{PostgresURL: testserver.Postgres(b)} }},
	} {
		b.Run(be.name, func(b *testing.B) { benchmarkGC(b, be.options) })
	}
}

func benchmarkGC(b *testing.B, options func(b *testing.B) metadata.Options) {
	ctx := context.Background()
	var baseline, during []uint32 // µs
	var baselineTook, duringTook time.Duration
	var peakHeap, peakLive, basePeakHeap, basePeakLive uint64
	var blobs, links, manifests int
	var deleted int64
	b.StopTimer()
	for range b.N {
		reg := seed(b, options(b))
		h := registry.New(registry.Options{DB: reg.db, Store: reg.store, Logger: discard, LinkDeadline: 10 * time.Millisecond})
		srv := httptest.NewServer(h)
		c := gc.New(gc.Options{DB: reg.db, Store: reg.store, Logger: discard,
			Grace: time.Nanosecond, Untagged: time.Nanosecond, LinkDeadline: 10 * time.Millisecond})

		// Pulls run from here to the end of the collection; the baseline
		// is the stretch just before the run, as long as the run but no
		// longer than -gc.baseline.
		window := *benchBaseline
		if *benchPullers == 0 {
			window = 0
		}
		runtime.GC()
		p := startPullers(srv.URL, reg, *benchPullers)
		mem := startSampler()
		time.Sleep(window)
		base := mem.stop()
		mem = startSampler()
		var rep *gc.Report
		var err error
		p.startRun()
		start := time.Now()
		b.StartTimer()
		pprof.Do(ctx, pprof.Labels("phase", "gc"), func(ctx context.Context) {
			rep, err = c.Run(ctx, false)
		})
		b.StopTimer()
		took := time.Since(start)
		peak := mem.stop()
		failures := p.stop()
		srv.Close()
		if err != nil {
			b.Fatalf("Run: %v", err)
		}
		if failures != "" {
			b.Fatalf("pulls failed: %s", failures)
		}
		reg.check(b, rep)

		from := start.Add(-min(window, took))
		if window < took && *benchPullers > 0 {
			b.Logf("baseline %v, shorter than the run (%v)", window, took.Round(time.Millisecond))
		}
		before, while := p.baseline(from), p.during()
		baseline, during = append(baseline, before...), append(during, while...)
		baselineTook += min(window, took)
		duringTook += took
		peakHeap, peakLive = max(peakHeap, peak.heap), max(peakLive, peak.live)
		basePeakHeap, basePeakLive = max(basePeakHeap, base.heap), max(basePeakLive, base.live)
		blobs += len(rep.Blobs)
		links += len(rep.Links)
		manifests += len(rep.Manifests)
		deleted += rep.Bytes
		b.Logf("run %v: %d manifests, %d links, %d blobs, %d bytes; %d requests in the baseline, %d during; seeding took %v",
			took.Round(time.Millisecond), len(rep.Manifests), len(rep.Links), len(rep.Blobs), rep.Bytes,
			len(before), len(while), reg.seeded.Round(time.Millisecond))
		reg.close()
	}
	n := float64(b.N)
	b.ReportMetric(float64(blobs)/n, "blobs-deleted")
	b.ReportMetric(float64(links)/n, "links-deleted")
	b.ReportMetric(float64(manifests)/n, "manifests-deleted")
	b.ReportMetric(float64(deleted)/n, "bytes-deleted")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakLive)/(1<<20), "peak-live-MiB")
	if *benchPullers == 0 {
		return
	}
	b.ReportMetric(float64(basePeakHeap)/(1<<20), "peak-heap-MiB-baseline")
	b.ReportMetric(float64(basePeakLive)/(1<<20), "peak-live-MiB-baseline")
	for _, m := range []struct {
		name    string
		samples []uint32
		took    time.Duration
	}{{"baseline", baseline, baselineTook}, {"during-gc", during, duringTook}} {
		b.ReportMetric(percentile(m.samples, 50), "p50-ms-"+m.name)
		b.ReportMetric(percentile(m.samples, 99), "p99-ms-"+m.name)
		b.ReportMetric(float64(len(m.samples))/m.took.Seconds(), "req/s-"+m.name)
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchImage is a kept manifest's tag and the blobs a puller may fetch.
type benchImage struct {
	repo, tag string
	blobs     []oci.Digest
}

// benchRegistry is a seeded registry and what the collection must delete.
type benchRegistry struct {
	db     *metadata.DB
	store  *storage.Store
	images []benchImage
	seeded time.Duration
	close  func() error // closes db, once
	// What a run must report.
	manifests, links, blobs int
	bytes                   int64
}

// benchBlob is a blob to seed: its bytes and where they are linked.
type benchBlob struct {
	digest oci.Digest
	data   []byte
}

func (bb benchBlob) descriptor(mediaType string) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": bb.digest, "size": len(bb.data)}
}

// seed builds the benchmark's registry (see benchRepos) in a fresh
// database and disk store: bytes through the store, rows through the
// metadata API, in large transactions.
func seed(b *testing.B, o metadata.Options) *benchRegistry {
	b.Helper()
	start := time.Now()
	ctx := context.Background()
	db, err := metadata.Open(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	d, err := disk.New(filepath.Join(b.TempDir(), "data"), disk.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	reg := &benchRegistry{db: db, store: storage.NewStore(d)}
	reg.close = sync.OnceValue(db.Close)
	b.Cleanup(func() { reg.close() })

	rng := rand.New(rand.NewPCG(1, 2))
	var count uint64
	newBlob := func() benchBlob {
		data := make([]byte, 32+rng.IntN(225)) // 32–256 bytes
		binary.BigEndian.PutUint64(data, count)
		count++
		for i := 8; i < len(data); i++ {
			data[i] = byte(rng.Uint32())
		}
		return benchBlob{oci.FromBytes(data), data}
	}
	repoName := func(r int) string { return fmt.Sprintf("bench/app%d", r) }
	// own[r][2p] are the blobs of repository r's kept manifest of pair p,
	// own[r][2p+1] those of its garbage one; [0] is the config.
	own := make([][][]benchBlob, benchRepos)
	var all []benchBlob
	for r := range own {
		own[r] = make([][]benchBlob, 2*benchPairs)
		for m := range own[r] {
			for range benchOwnBlobs {
				bb := newBlob()
				own[r][m] = append(own[r][m], bb)
				all = append(all, bb)
				if m%2 == 1 {
					reg.blobs++
					reg.bytes += int64(len(bb.data))
				}
			}
		}
	}

	// The bytes, from a few goroutines.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(all); i = int(next.Add(1) - 1) {
				bb := all[i]
				if _, err := reg.store.PutBlob(ctx, fmt.Sprintf("seed-%d", i), bb.digest, bytes.NewReader(bb.data)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("PutBlob: %v", err)
	}

	// The rows: links, then manifests, a few thousand statements a transaction.
	type link struct {
		repo string
		bb   benchBlob
	}
	var links []link
	for r := range own {
		for m := range own[r] {
			for _, bb := range own[r][m] {
				links = append(links, link{repoName(r), bb})
			}
			if m%2 == 1 { // the cross-repository layer of a garbage manifest
				links = append(links, link{repoName(r), own[(r+1)%benchRepos][m-1][2]})
			}
		}
	}
	for batch := range slices.Chunk(links, benchSeedBatch) {
		err := db.InTx(ctx, func(tx *metadata.Tx) error {
			for _, l := range batch {
				if err := tx.LinkBlob(ctx, l.repo, l.bb.digest, int64(len(l.bb.data))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("LinkBlob: %v", err)
		}
	}
	type put struct {
		repo    string
		digest  oci.Digest
		parsed  *oci.Manifest
		payload []byte
		tag     string
	}
	var puts []put
	for r := range own {
		for m, blobs := range own[r] {
			layers := blobs[1:]
			if m%2 == 1 { // garbage: its twin's first layer, and a layer of the next repository
				layers = append(slices.Clip(layers), own[r][m-1][1], own[(r+1)%benchRepos][m-1][2])
			}
			ls := []any{}
			for _, l := range layers {
				ls = append(ls, l.descriptor("application/vnd.oci.image.layer.v1.tar+gzip"))
			}
			payload, err := json.Marshal(map[string]any{
				"schemaVersion": 2,
				"mediaType":     oci.MediaTypeImageManifest,
				"config":        blobs[0].descriptor("application/vnd.oci.image.config.v1+json"),
				"layers":        ls,
			})
			if err != nil {
				b.Fatal(err)
			}
			parsed, err := oci.ParseManifest(oci.MediaTypeImageManifest, payload)
			if err != nil {
				b.Fatal(err)
			}
			p := put{repo: repoName(r), digest: oci.FromBytes(payload), parsed: parsed, payload: payload}
			if m%2 == 0 {
				p.tag = fmt.Sprintf("v%d", m/2)
				img := benchImage{repo: p.repo, tag: p.tag}
				for _, bb := range blobs {
					img.blobs = append(img.blobs, bb.digest)
				}
				reg.images = append(reg.images, img)
			} else {
				reg.manifests++
				reg.links += len(blobs) + 1 // its own blobs and the cross-repository layer
			}
			puts = append(puts, p)
		}
	}
	for batch := range slices.Chunk(puts, benchSeedBatch/15) {
		err := db.InTx(ctx, func(tx *metadata.Tx) error {
			for _, p := range batch {
				var tags []string
				if p.tag != "" {
					tags = []string{p.tag}
				}
				if err := tx.PutManifest(ctx, p.repo, p.digest, p.parsed, p.payload, tags,
					metadata.Change{Actor: "bench", Action: metadata.ActionPush}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("PutManifest: %v", err)
		}
	}
	settle(b, o)
	reg.seeded = time.Since(start)
	return reg
}

// settle does after the bulk load what the database would do on its own
// soon after: on PostgreSQL autovacuum's VACUUM ANALYZE and a checkpoint,
// on SQLite a checkpoint of the WAL; otherwise they run during the
// baseline or the run. (SQLite gets no ANALYZE: Berth never runs it.)
func settle(b *testing.B, o metadata.Options) {
	b.Helper()
	driver, dsn, stmts := "pgx", o.PostgresURL, []string{"VACUUM ANALYZE", "CHECKPOINT"}
	if o.PostgresURL == "" {
		driver, dsn, stmts = "sqlite", o.SQLitePath, []string{"PRAGMA wal_checkpoint(TRUNCATE)"}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			b.Fatalf("%s: %v", stmt, err)
		}
	}
}

// check fails the benchmark unless the run deleted exactly the seeded
// garbage, bytes included.
func (reg *benchRegistry) check(b *testing.B, rep *gc.Report) {
	b.Helper()
	if len(rep.Manifests) != reg.manifests || len(rep.Links) != reg.links || len(rep.Blobs) != reg.blobs ||
		rep.Bytes != reg.bytes || len(rep.Orphans) != 0 || rep.Kept != 0 || len(rep.Failed) != 0 {
		b.Fatalf("run deleted %d manifests, %d links, %d blobs, %d bytes, %d orphans, kept %d, failed %v; "+
			"want %d, %d, %d, %d, 0, 0, none", len(rep.Manifests), len(rep.Links), len(rep.Blobs), rep.Bytes,
			len(rep.Orphans), rep.Kept, rep.Failed, reg.manifests, reg.links, reg.blobs, reg.bytes)
	}
	stored := 0
	if err := reg.store.ListBlobs(context.Background(), func(storage.Object) error { stored++; return nil }); err != nil {
		b.Fatal(err)
	}
	if want := benchRepos * benchPairs * benchOwnBlobs; stored != want {
		b.Fatalf("%d blobs left in storage, want %d", stored, want)
	}
}

// percentile returns the p-th percentile of latencies in µs, in ms.
func percentile(latencies []uint32, p int) float64 {
	if len(latencies) == 0 {
		return 0
	}
	ls := slices.Clone(latencies)
	slices.Sort(ls)
	return float64(ls[(len(ls)-1)*p/100]) / 1000
}

// pullers pull kept images over HTTP until stopped, and record the latency
// of every request: in the baseline with the time it started (to trim the
// baseline to the run's length), during the run alone. Compactly, since the
// samples live in the heap that is measured.
type pullers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	began   time.Time
	running atomic.Bool // the run has started
	base    [][]uint64  // per puller: ms since began << 32 | µs
	while   [][]uint32  // per puller: µs
	failed  []string    // per puller: its failure
}

func startPullers(url string, reg *benchRegistry, n int) *pullers {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pullers{cancel: cancel, began: time.Now(), base: make([][]uint64, n), while: make([][]uint32, n), failed: make([]string, n)}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := range n {
		p.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			get := func(path string) bool {
				running := p.running.Load()
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
				req.Header.Set("Accept", oci.MediaTypeImageManifest)
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				took := uint32(time.Since(start) / time.Microsecond)
				if ctx.Err() != nil {
					return false
				}
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				if err != nil {
					p.failed[i] = fmt.Sprintf("GET %s: %v", path, err)
					return false
				}
				if running {
					p.while[i] = append(p.while[i], took)
				} else {
					p.base[i] = append(p.base[i], uint64(start.Sub(p.began)/time.Millisecond)<<32|uint64(took))
				}
				return true
			}
			for ctx.Err() == nil {
				img := reg.images[rng.IntN(len(reg.images))]
				if !get("/v2/"+img.repo+"/manifests/"+img.tag) ||
					!get("/v2/"+img.repo+"/blobs/"+string(img.blobs[rng.IntN(len(img.blobs))])) {
					return
				}
			}
		})
	}
	return p
}

// startRun records the requests that start from now on as during the run.
func (p *pullers) startRun() { p.running.Store(true) }

// stop stops the pullers and returns the first failure, if any.
func (p *pullers) stop() string {
	p.cancel()
	p.wg.Wait()
	for _, f := range p.failed {
		if f != "" {
			return f
		}
	}
	return ""
}

// baseline returns the latencies of the requests that started from from
// until the run.
func (p *pullers) baseline(from time.Time) []uint32 {
	after := uint64(from.Sub(p.began) / time.Millisecond)
	var out []uint32
	for _, ss := range p.base {
		for _, s := range ss {
			if s>>32 >= after {
				out = append(out, uint32(s))
			}
		}
	}
	return out
}

// during returns the latencies of the requests that started during the run.
func (p *pullers) during() []uint32 { return slices.Concat(p.while...) }

// sampler records the peak of the Go heap, every 2ms, without stopping
// the world: heap is HeapAlloc's figure (live and not yet swept objects),
// live the heap the last GC cycle found live.
type sampler struct {
	stopped chan struct{}
	done    chan struct{}
	heap    uint64
	live    uint64
}

func startSampler() *sampler {
	s := &sampler{stopped: make(chan struct{}), done: make(chan struct{})}
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() {
		metrics.Read(ms)
		s.heap = max(s.heap, ms[0].Value.Uint64())
		s.live = max(s.live, ms[1].Value.Uint64())
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-s.stopped:
				read()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() *sampler {
	close(s.stopped)
	<-s.done
	return s
}
