package metadata

import (
	"github.com/berthhq/berth/oci"
)

// Event is a change to a tag or manifest that webhooks announce. It is
// written to the outbox in the transaction that makes the change.
type Event struct {
	ID         string // unique and stable: the webhook-id of every delivery of it
	Seq        int64  // the outbox row; within a repository, in commit order
	Time       int64  // Unix nanoseconds
	Action     string // one of the Action constants, or ActionManifestDelete
	Repository string
	Tag        string // "" for a manifest delete
	Digest     oci.Digest
	Previous   oci.Digest // where the tag pointed before ("" if nowhere)
	MediaType  string     // of the manifest Digest names
	Size       int64      // of that manifest
	Numbered   bool       // the tag is a version under the repository's ordering
	Newest     bool       // and, after the change, the newest live one
	Actor      string
}

// ActionManifestDelete is the action of an event for a manifest deleted by
// digest (tag history records the tags it ended as deletes).
const ActionManifestDelete = "manifest-delete"
