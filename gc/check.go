package gc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// Rehash reads every blob and verifies that its bytes hash to its digest.
	Rehash bool
	// Repair deletes the orphans older than Grace: bytes with no metadata
	// row (blobs) or no session (uploads). Nothing with a row is touched.
	Repair bool
	// Grace is how old an orphan must be, by the time its object was last
	// written, to count: younger ones may be a push between writing its
	// bytes and recording them. An object whose driver knows no time is
	// never old enough.
	Grace time.Duration
	// LinkDeadline is the registry's (see Options.LinkDeadline): a repair
	// waits that long between deleting orphans and forgetting them.
	// Default 1m.
	LinkDeadline time.Duration
	// Progress, if set, is called after each blob row and object checked.
	Progress func(CheckProgress)
}

// CheckProgress is how far Check has come.
type CheckProgress struct {
	Blobs   int64 // blobs rows checked
	Objects int64 // objects listed under blobs/ and uploads/
}

// Finding is one thing Check found wrong.
type Finding struct {
	Digest oci.Digest `json:"digest,omitempty"` // the blob; empty for an upload or a stray key
	Key    string     `json:"key"`              // where its bytes are, or should be
	Size   int64      `json:"size"`             // the size metadata records, or the object's for an orphan
	Stored int64      `json:"stored,omitempty"` // the stored size, for a size mismatch
	// ModTime is when an orphan's object was last written.
	ModTime  time.Time `json:"mod_time,omitzero"`
	Repaired bool      `json:"repaired,omitempty"` // deleted by Repair
}

// CheckReport is what Check found. Missing, size-mismatched and corrupt
// blobs are damage: content that pulls cannot serve. Orphans only waste
// space.
type CheckReport struct {
	Blobs   int64 `json:"blobs"`   // live blobs rows checked
	Objects int64 `json:"objects"` // objects under blobs/
	Uploads int64 `json:"uploads"` // objects under uploads/

	Missing      []Finding `json:"missing"`       // rows whose bytes are absent
	SizeMismatch []Finding `json:"size_mismatch"` // bytes of another size than the row's
	Corrupt      []Finding `json:"corrupt"`       // bytes that do not hash to their digest (Rehash)
	Orphans      []Finding `json:"orphans"`       // blob objects with no row, older than Grace
	// OrphanUploads are upload bytes with no session, older than Grace.
	OrphanUploads []Finding `json:"orphan_uploads"`
	// Young counts the objects with no row or session kept as younger than Grace.
	Young int64 `json:"young"`
	// Stray are keys under blobs/ that are no blob's key: reported, never deleted.
	Stray []Finding `json:"stray"`
}

// Damaged reports whether some content is missing, mis-sized or corrupt.
func (r *CheckReport) Damaged() bool {
	return len(r.Missing)+len(r.SizeMismatch)+len(r.Corrupt) > 0
}

// ErrNoBlobs: Check was asked to repair, but metadata records no blob at all.
var ErrNoBlobs = errors.New("gc: metadata records no blobs; refusing to repair (is it the right database?)")

// checkPage is how many blobs rows Check reads at a time.
const checkPage = 500

// Check compares metadata with storage: every live blobs row against its
// bytes, then every object in storage against the rows and upload sessions.
// It changes nothing unless o.Repair, and then deletes only orphans older
// than the grace period, the way a collection deletes blobs: each is first
// recorded as a blob being deleted (which fails if a push recorded it
// meanwhile), then its bytes go, then the record. A repair holds the
// collection lock (ErrRunning while a collection runs).
func Check(ctx context.Context, db *metadata.DB, store *storage.Store, o CheckOptions) (CheckReport, error) {
	var lock *metadata.GCLock
	if o.Repair {
		var err error
		lock, err = db.TryLockGC(ctx)
		if errors.Is(err, metadata.ErrGCRunning) {
			return CheckReport{}, ErrRunning
		}
		if err != nil {
			return CheckReport{}, err
		}
		defer lock.Unlock()
	}
	if o.LinkDeadline <= 0 {
		o.LinkDeadline = time.Minute
	}
	rep := CheckReport{Missing: []Finding{}, SizeMismatch: []Finding{}, Corrupt: []Finding{},
		Orphans: []Finding{}, OrphanUploads: []Finding{}, Stray: []Finding{}}
	progress := func() {
		if o.Progress != nil {
			o.Progress(CheckProgress{Blobs: rep.Blobs, Objects: rep.Objects + rep.Uploads})
		}
	}
	var after oci.Digest
	for {
		page, err := db.Blobs(ctx, after, checkPage)
		if err != nil {
			return rep, err
		}
		if len(page) == 0 && after == "" && o.Repair {
			// A wrong database (a typo, a fresh one) would make every blob
			// an orphan: repair nothing rather than everything.
			return rep, ErrNoBlobs
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Digest
		for _, b := range page {
			if b.State != "live" {
				continue // being forgotten: its bytes may go any moment
			}
			if err := checkBlob(ctx, store, b, o.Rehash, &rep); err != nil {
				return rep, err
			}
			rep.Blobs++
			progress()
		}
	}

	cutoff := time.Now().Add(-o.Grace)
	err := store.ListBlobs(ctx, func(obj storage.Object) error {
		rep.Objects++
		defer progress()
		f := Finding{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime}
		d, ok := storage.BlobDigest(obj.Key)
		if !ok {
			rep.Stray = append(rep.Stray, f)
			return nil
		}
		f.Digest = d
		if known, err := db.BlobExists(ctx, d); err != nil || known {
			return err
		}
		if obj.Pending || obj.ModTime.IsZero() || !obj.ModTime.Before(cutoff) {
			rep.Young++ // a write in progress counts as young, whenever it began
			return nil
		}
		if o.Repair {
			claimed := false
			err := db.InTx(ctx, func(tx *metadata.Tx) (err error) {
				claimed, err = tx.ClaimOrphanBlob(ctx, d, obj.Size)
				return err
			})
			if err != nil || !claimed {
				return err // recorded by a push since the listing: not an orphan
			}
			f.Repaired = true
		}
		rep.Orphans = append(rep.Orphans, f)
		return nil
	})
	if err != nil {
		return rep, err
	}
	if o.Repair {
		// The claimed orphans go as collected blobs do; so do any blobs a
		// crashed collection left marked.
		_, failed, err := sweep(ctx, db, store, lock, o.LinkDeadline, func() error { return sleep(ctx, o.LinkDeadline) })
		if err == nil && len(failed) > 0 {
			err = errors.New(failed[0])
		}
		if err != nil {
			return rep, err
		}
	}

	err = orphanUploads(ctx, db, store, cutoff, o.Repair, func(obj storage.Object, old, removed bool) {
		rep.Uploads++
		defer progress()
		switch {
		case !old:
			rep.Young++
		default:
			rep.OrphanUploads = append(rep.OrphanUploads,
				Finding{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime, Repaired: removed})
		}
	})
	return rep, err
}

// checkBlob compares one blobs row with its bytes.
func checkBlob(ctx context.Context, store *storage.Store, b metadata.BlobRecord, rehash bool, rep *CheckReport) error {
	f := Finding{Digest: b.Digest, Key: storage.BlobKey(b.Digest), Size: b.Size}
	size, err := store.Stat(ctx, b.Digest)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		rep.Missing = append(rep.Missing, f)
		return nil
	case err != nil:
		return err
	case size != b.Size:
		f.Stored = size
		rep.SizeMismatch = append(rep.SizeMismatch, f)
		return nil
	case !rehash:
		return nil
	}
	r, err := store.Open(ctx, b.Digest)
	if errors.Is(err, storage.ErrNotFound) {
		rep.Missing = append(rep.Missing, f)
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = storage.Verify(r, b.Digest)
	switch {
	case errors.Is(err, storage.ErrDigestMismatch):
		rep.Corrupt = append(rep.Corrupt, f)
		return nil
	case err != nil:
		return fmt.Errorf("rehashing %s: %w", b.Digest, err)
	}
	return nil
}
