package gc

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/storage"
)

// UploadReport counts what PurgeUploads reclaimed.
type UploadReport struct {
	Sessions int // abandoned upload sessions removed
	Files    int // staging files removed, with or without a session
	Bytes    int64
}

// PurgeUploads reclaims uploads untouched since before: sessions a client
// abandoned, and staging files left with no session at all (a server killed
// in the middle of a one-request upload).
func PurgeUploads(ctx context.Context, db *metadata.DB, store *storage.Store, before time.Time) (UploadReport, error) {
	var rep UploadReport
	ids, err := db.StaleUploads(ctx, before)
	if err != nil {
		return rep, err
	}
	for _, id := range ids {
		deleted, err := purgeSession(ctx, db, id, before)
		if err != nil {
			return rep, err
		}
		if deleted {
			rep.Sessions++
		}
	}
	err = orphanUploads(ctx, db, store, before, true, func(o storage.Object, old, removed bool) {
		if removed {
			rep.Files++
			rep.Bytes += o.Size
		}
	})
	return rep, err
}

// orphanUploads calls fn for every upload's bytes in storage that have no
// session, saying whether they were last written before the cutoff and, if
// remove, whether they were deleted (those before the cutoff are). Bytes of
// a session are skipped.
func orphanUploads(ctx context.Context, db *metadata.DB, store *storage.Store, before time.Time, remove bool,
	fn func(o storage.Object, old, removed bool)) error {
	var errs []error
	err := store.ListUploads(ctx, func(o storage.Object) error {
		id := strings.TrimPrefix(o.Key, storage.UploadsPrefix)
		live, err := db.UploadExists(ctx, id)
		if err != nil || live {
			return err
		}
		old := !o.ModTime.IsZero() && o.ModTime.Before(before)
		if old && remove {
			if err := store.CancelUpload(ctx, id); err != nil {
				errs = append(errs, err)
				return nil
			}
		}
		fn(o, old, old && remove)
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// purgeSession forgets a stale upload session unless a request is working
// on it (it holds the upload's lock) or touched it since the list was made.
func purgeSession(ctx context.Context, db *metadata.DB, id string, before time.Time) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	unlock, err := db.LockUpload(lctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil // busy: a request is on it, so it is not abandoned
	}
	defer unlock()
	var deleted bool
	err = db.InTx(ctx, func(tx *metadata.Tx) (err error) {
		deleted, err = tx.DeleteStaleUpload(ctx, id, before)
		return err
	})
	return deleted, err
}
