package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrRunning: another collection is running, in this process or another
// replica; this one did nothing.
var ErrRunning = errors.New("gc: a collection is already running")

// Options configure a Collector. Replicas must agree on them.
type Options struct {
	DB     *metadata.DB
	Store  *storage.Store
	Logger *slog.Logger
	// Grace keeps whatever a repository linked or needed more recently:
	// a push uploads its blobs before the manifest that references them.
	// Default 1h.
	Grace time.Duration
	// Untagged is how long a manifest no tag points at is kept after it
	// was last linked or needed; 0 keeps untagged manifests for good.
	Untagged time.Duration
	// RestoreWindow is how long a deleted tag can be restored: the
	// manifests of tags deleted within it are kept. Default 14 days.
	RestoreWindow time.Duration
	// LinkDeadline bounds the time between an upload finding (or putting)
	// a blob's bytes in place and recording the blob (registry.Options
	// LinkDeadline, which must be the same). A collection waits that long
	// between deleting bytes and forgetting their blobs, so that no upload
	// can record a blob whose bytes it saw just before they went. Default 1m.
	LinkDeadline time.Duration
	// UploadMaxAge: upload sessions untouched for longer are abandoned.
	// Default 24h.
	UploadMaxAge time.Duration
	// Metrics, if set, receives the collector's Prometheus metrics.
	Metrics prometheus.Registerer
}

// Collector deletes what nothing needs: untagged manifests (by policy),
// blob links no manifest references, blobs no repository links, bytes
// with no record, abandoned uploads. It runs beside pushes and pulls.
type Collector struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	// pause is called at named points of a run; tests use it to interleave
	// a run with pushes.
	pause func(point string)
	// sleep waits d, or until ctx ends.
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Collector.
func New(o Options) *Collector {
	if o.Grace <= 0 {
		o.Grace = time.Hour
	}
	if o.RestoreWindow <= 0 {
		o.RestoreWindow = 14 * 24 * time.Hour
	}
	if o.LinkDeadline <= 0 {
		o.LinkDeadline = time.Minute
	}
	if o.UploadMaxAge <= 0 {
		o.UploadMaxAge = 24 * time.Hour
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Collector{o: o, log: log, metrics: newMetrics(o.Metrics), pause: func(string) {}, sleep: sleep}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Report is what a run deleted, or would delete (DryRun).
type Report struct {
	DryRun  bool      `json:"dryRun"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"` // how long the run took
	// Manifests are the manifests unlinked from their repositories.
	Manifests []Item `json:"manifests"`
	// Links are the blob links removed from repositories.
	Links []Item `json:"links"`
	// Blobs are the blobs deleted from storage; Bytes their size.
	Blobs []Item `json:"blobs"`
	Bytes int64  `json:"bytes"`
	// Orphans are bytes in storage that no blob row recorded, older than
	// the grace period (left by a crash); included in Blobs once deleted.
	Orphans []Item `json:"orphans"`
	// Candidates counts the blobs and links weighed; Kept those that a
	// push needed again before they could go.
	Candidates int `json:"candidates"`
	Kept       int `json:"kept"`
	// Uploads counts the abandoned upload sessions and staging files
	// removed (or, dry, the sessions that would be).
	Uploads      int   `json:"uploads"`
	UploadsBytes int64 `json:"uploadsBytes"`
	// Failed says what could not be deleted this time; the next run tries again.
	Failed []string `json:"failed"`
}

// Item is one thing collected.
type Item struct {
	Repository string     `json:"repository,omitempty"`
	Digest     oci.Digest `json:"digest"`
	Size       int64      `json:"size"`
}

// page is how many rows a run reads, or deletes in one transaction, at a time.
const page = 200

// Run collects once, or with dryRun reports what it would collect and
// changes nothing. Only one run at a time holds the lock, across replicas:
// another gets ErrRunning.
func (c *Collector) Run(ctx context.Context, dryRun bool) (*Report, error) {
	lock, err := c.o.DB.TryLockGC(ctx)
	if errors.Is(err, metadata.ErrGCRunning) {
		if !dryRun {
			c.metrics.run("busy", 0)
		}
		return nil, ErrRunning
	}
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	r := &Report{DryRun: dryRun, Started: time.Now(), Manifests: []Item{}, Links: []Item{}, Blobs: []Item{},
		Orphans: []Item{}, Failed: []string{}}
	err = c.run(ctx, lock, r)
	took := time.Since(r.Started)
	r.Seconds = took.Seconds()
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	if !dryRun {
		c.metrics.run(outcome, took)
		c.metrics.collected(r)
	}
	c.log.Info("gc: run ended", "dry_run", dryRun, "took", took.Round(time.Millisecond),
		"manifests", len(r.Manifests), "links", len(r.Links), "blobs", len(r.Blobs), "bytes", r.Bytes,
		"orphans", len(r.Orphans), "kept", r.Kept, "uploads", r.Uploads, "failed", len(r.Failed), "error", err)
	return r, err
}

// horizons are the times a run compares against, in Unix nanoseconds.
type horizons struct {
	grace    int64 // linked or needed before it: no longer protected by the grace period
	untagged int64 // untagged manifests last needed before it are garbage (0: none are)
	restore  int64 // tags ended before it can no longer be restored
}

func (c *Collector) run(ctx context.Context, lock *metadata.GCLock, r *Report) error {
	h := horizons{
		grace:   r.Started.Add(-c.o.Grace).UnixNano(),
		restore: r.Started.Add(-c.o.RestoreWindow).UnixNano(),
	}
	if c.o.Untagged > 0 {
		h.untagged = min(h.grace, r.Started.Add(-c.o.Untagged).UnixNano())
	}
	// planned counts, in a dry run, the links each blob would lose.
	planned := map[oci.Digest]int{}
	var after int64
	for {
		repos, err := c.o.DB.RepositoryRefs(ctx, after, page)
		if err != nil || len(repos) == 0 {
			if err != nil {
				return err
			}
			break
		}
		after = repos[len(repos)-1].ID
		for _, repo := range repos {
			if err := c.repository(ctx, repo, h, r, planned); err != nil {
				return fmt.Errorf("gc: repository %s: %w", repo.Name, err)
			}
		}
	}
	c.pause("repositories")
	if err := c.blobs(ctx, h, r, planned); err != nil {
		return fmt.Errorf("gc: blobs: %w", err)
	}
	c.pause("marked")
	if err := c.orphans(ctx, h, r); err != nil {
		return fmt.Errorf("gc: orphan scan: %w", err)
	}
	if r.DryRun {
		if err := c.leftovers(ctx, r); err != nil {
			return fmt.Errorf("gc: blobs being deleted: %w", err)
		}
		return c.staleUploads(ctx, r)
	}
	if err := c.sweep(ctx, lock, r); err != nil {
		return fmt.Errorf("gc: sweep: %w", err)
	}
	if err := c.unusedManifests(ctx, h); err != nil {
		return fmt.Errorf("gc: unused manifests: %w", err)
	}
	up, err := PurgeUploads(ctx, c.o.DB, c.o.Store, r.Started.Add(-c.o.UploadMaxAge))
	r.Uploads, r.UploadsBytes = up.Sessions+up.Files, up.Bytes
	return err
}

// repository unlinks a repository's garbage manifests, then the blob links
// that no remaining manifest references.
func (c *Collector) repository(ctx context.Context, repo metadata.RepositoryRef, h horizons, r *Report, planned map[oci.Digest]int) error {
	nodes, links, err := c.o.DB.RepositoryGraph(ctx, repo.ID, h.restore)
	if err != nil {
		return err
	}
	garbage := plan(nodes, h)
	c.pause("planned " + repo.Name)
	gone := map[oci.Digest]bool{}
	if r.DryRun {
		for _, n := range garbage {
			gone[n.Digest] = true
			r.Manifests = append(r.Manifests, Item{repo.Name, n.Digest, n.Size})
		}
	} else {
		done, kept, err := inBatches(ctx, c.o.DB, garbage, func(tx *metadata.Tx, n *metadata.ManifestNode) (bool, error) {
			return tx.UnlinkGarbageManifest(ctx, repo.ID, n.Digest, h.untagged, h.restore)
		})
		r.Kept += kept
		for _, n := range done {
			gone[n.Digest] = true
			r.Manifests = append(r.Manifests, Item{repo.Name, n.Digest, n.Size})
		}
		if err != nil {
			return err
		}
	}
	referenced := map[oci.Digest]bool{}
	for _, n := range nodes {
		if !gone[n.Digest] {
			for _, b := range n.Blobs {
				referenced[b] = true
			}
		}
	}
	var candidates []metadata.BlobLink
	for _, l := range links {
		if l.Linked < h.grace && !referenced[l.Digest] {
			candidates = append(candidates, l)
		}
	}
	r.Candidates += len(candidates)
	if r.DryRun {
		for _, l := range candidates {
			planned[l.Digest]++
			r.Links = append(r.Links, Item{repo.Name, l.Digest, l.Size})
		}
		return nil
	}
	done, kept, err := inBatches(ctx, c.o.DB, candidates, func(tx *metadata.Tx, l metadata.BlobLink) (bool, error) {
		return tx.UnlinkGarbageBlob(ctx, repo.ID, l.Digest, h.grace)
	})
	r.Kept += kept
	for _, l := range done {
		r.Links = append(r.Links, Item{repo.Name, l.Digest, l.Size})
	}
	return err
}

// blobs marks for deletion the blobs no repository links any more.
func (c *Collector) blobs(ctx context.Context, h horizons, r *Report, planned map[oci.Digest]int) error {
	var after oci.Digest
	for {
		uses, err := c.o.DB.BlobUses(ctx, after, page)
		if err != nil || len(uses) == 0 {
			return err
		}
		after = uses[len(uses)-1].Digest
		var candidates []metadata.BlobUse
		for _, u := range uses {
			if u.LastLinked < h.grace && u.Links-planned[u.Digest] <= 0 {
				candidates = append(candidates, u)
			}
		}
		r.Candidates += len(candidates)
		if r.DryRun {
			for _, u := range candidates {
				r.Blobs = append(r.Blobs, Item{Digest: u.Digest, Size: u.Size})
				r.Bytes += u.Size
			}
			continue
		}
		_, kept, err := inBatches(ctx, c.o.DB, candidates, func(tx *metadata.Tx, u metadata.BlobUse) (bool, error) {
			return tx.MarkBlobDeleting(ctx, u.Digest, h.grace)
		})
		r.Kept += kept
		if err != nil {
			return err
		}
	}
}

// orphans claims for deletion the bytes in storage that no blob row
// records and that were last written before the grace period: a crash
// between storing a blob and recording it leaves them.
func (c *Collector) orphans(ctx context.Context, h horizons, r *Report) error {
	return c.o.Store.ListBlobs(ctx, func(obj storage.Object) error {
		d, ok := storage.BlobDigest(obj.Key)
		// A pending write (S3: a one-request upload still sending) is no
		// orphan, however long it takes; a bucket lifecycle rule reclaims
		// one its writer abandoned.
		if !ok || obj.Pending || obj.ModTime.IsZero() || obj.ModTime.UnixNano() >= h.grace {
			return nil
		}
		if known, err := c.o.DB.BlobExists(ctx, d); err != nil || known {
			return err
		}
		claimed := true
		if !r.DryRun {
			err := c.o.DB.InTx(ctx, func(tx *metadata.Tx) (err error) {
				claimed, err = tx.ClaimOrphanBlob(ctx, d, obj.Size)
				return err
			})
			if err != nil {
				return err
			}
		}
		if claimed {
			r.Orphans = append(r.Orphans, Item{Digest: d, Size: obj.Size})
			if r.DryRun {
				r.Blobs = append(r.Blobs, Item{Digest: d, Size: obj.Size})
				r.Bytes += obj.Size
			}
		}
		return nil
	})
}

// sweep deletes the bytes of every blob being deleted (this run's and any
// a crashed run left), waits the link deadline, then forgets them: an
// upload that saw the bytes before they went either recorded its blob
// before the mark (and the mark was refused), or is refused by LinkBlob
// until the row is forgotten, or records it after the deadline, too late,
// and is refused by its own clock (see Options.LinkDeadline).
func (c *Collector) sweep(ctx context.Context, lock *metadata.GCLock, r *Report) error {
	done, failed, err := sweep(ctx, c.o.DB, c.o.Store, lock, c.o.LinkDeadline, func() error {
		c.pause("bytes deleted")
		return c.sleep(ctx, c.o.LinkDeadline)
	})
	for _, b := range done {
		r.Blobs = append(r.Blobs, Item{Digest: b.Digest, Size: b.Size})
		r.Bytes += b.Size
	}
	r.Failed = append(r.Failed, failed...)
	return err
}

// sweep is Collector.sweep, for Check too; wait is the wait between
// deleting and forgetting. The caller holds the collection lock.
func sweep(ctx context.Context, db *metadata.DB, store *storage.Store, lock *metadata.GCLock, deadline time.Duration, wait func() error) (done []metadata.BlobRecord, failed []string, err error) {
	var checked time.Time // when the lock was last seen held
	var deleted []metadata.BlobRecord
	err = eachDeleting(ctx, db, func(b metadata.BlobRecord) error {
		// The listing is only this run's while its lock holds: past that,
		// another run may have forgotten the row, and a push recorded the
		// blob again. That takes the other run the link deadline at least,
		// so a look every quarter of it will do.
		if time.Since(checked) > deadline/4 {
			if err := lock.Held(ctx); err != nil {
				return err
			}
			checked = time.Now()
		}
		if err := store.Delete(ctx, b.Digest); err != nil && !errors.Is(err, storage.ErrNotFound) {
			// The row stays marked: the next run deletes the bytes again.
			failed = append(failed, fmt.Sprintf("deleting blob %s: %v", b.Digest, err))
			return nil
		}
		deleted = append(deleted, b)
		return nil
	})
	if err != nil {
		return nil, failed, err
	}
	if len(deleted) == 0 {
		return nil, failed, nil
	}
	if err := wait(); err != nil {
		return nil, failed, err
	}
	done, _, err = inBatches(ctx, db, deleted, func(tx *metadata.Tx, b metadata.BlobRecord) (bool, error) {
		return tx.ForgetBlob(ctx, b.Digest)
	})
	return done, failed, err
}

// unusedManifests forgets stored manifests that no repository links and no
// tag history names: pushed by digest, then collected.
func (c *Collector) unusedManifests(ctx context.Context, h horizons) error {
	var after oci.Digest
	for {
		ds, err := c.o.DB.UnusedManifests(ctx, after, h.grace, page)
		if err != nil || len(ds) == 0 {
			return err
		}
		after = ds[len(ds)-1]
		c.pause("unused manifests listed")
		if _, _, err := inBatches(ctx, c.o.DB, ds, func(tx *metadata.Tx, d oci.Digest) (bool, error) {
			return tx.ForgetManifest(ctx, d)
		}); err != nil {
			return err
		}
	}
}

// leftovers adds to a dry run's report the blobs an earlier run marked and
// did not finish deleting (it was cut short): a run deletes them too.
func (c *Collector) leftovers(ctx context.Context, r *Report) error {
	return eachDeleting(ctx, c.o.DB, func(b metadata.BlobRecord) error {
		r.Blobs = append(r.Blobs, Item{Digest: b.Digest, Size: b.Size})
		r.Bytes += b.Size
		return nil
	})
}

// eachDeleting calls fn for every blob marked as being deleted, in digest
// order, a page at a time.
func eachDeleting(ctx context.Context, db *metadata.DB, fn func(metadata.BlobRecord) error) error {
	var after oci.Digest
	for {
		doomed, err := db.DeletingBlobs(ctx, after, page)
		if err != nil || len(doomed) == 0 {
			return err
		}
		after = doomed[len(doomed)-1].Digest
		for _, b := range doomed {
			if err := fn(b); err != nil {
				return err
			}
		}
	}
}

// staleUploads counts, in a dry run, the upload sessions a run would end.
func (c *Collector) staleUploads(ctx context.Context, r *Report) error {
	ids, err := c.o.DB.StaleUploads(ctx, r.Started.Add(-c.o.UploadMaxAge))
	r.Uploads = len(ids)
	return err
}

// inBatches runs del on each item, a transaction per batch of them, and
// returns the items it deleted and how many it kept (del said no: the
// re-check found them needed). It stops at the first error.
func inBatches[T any](ctx context.Context, db *metadata.DB, items []T, del func(*metadata.Tx, T) (bool, error)) (done []T, kept int, err error) {
	for batch := range slices.Chunk(items, page) {
		var ok []T
		err := db.InTx(ctx, func(tx *metadata.Tx) error {
			ok = ok[:0] // a retried transaction starts over
			for _, it := range batch {
				deleted, err := del(tx, it)
				if err != nil {
					return err
				}
				if deleted {
					ok = append(ok, it)
				}
			}
			return nil
		})
		if err != nil {
			return done, kept, err
		}
		done = append(done, ok...)
		kept += len(batch) - len(ok)
	}
	return done, kept, nil
}
