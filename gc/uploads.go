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
		if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.DeleteUpload(ctx, id) }); err != nil {
			return rep, err
		}
		rep.Sessions++
	}
	var errs []error
	err = store.ListUploads(ctx, func(o storage.Object) error {
		id := strings.TrimPrefix(o.Key, storage.UploadsPrefix)
		if !o.ModTime.Before(before) {
			return nil
		}
		live, err := db.UploadExists(ctx, id)
		if err != nil || live {
			return err
		}
		if err := store.CancelUpload(ctx, id); err != nil {
			errs = append(errs, err)
			return nil
		}
		rep.Files++
		rep.Bytes += o.Size
		return nil
	})
	return rep, errors.Join(append(errs, err)...)
}
