package registry

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// retentionActor is the actor of the history rows retention writes.
const retentionActor = "retention"

// condemned returns the repository's numbered tags its retention rules do
// not keep. The newest version is always kept; with no rule, every tag is.
func (reg *Registry) condemned(ctx context.Context, name string, p *tagPolicy) ([]metadata.TagEvent, error) {
	ret := p.Retention
	if ret.KeepNewest == nil && ret.KeepYoungerThan == nil && ret.KeepPattern == nil {
		return nil, nil
	}
	if err := reg.db.EnsureVersionKeys(ctx, name, p.versioning); err != nil {
		return nil, err
	}
	versions, err := reg.db.Versions(ctx, name, nil, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	keepPattern := p.keepPattern()
	now := time.Now()
	var out []metadata.TagEvent
	for i, v := range versions {
		keep := i == 0 ||
			(ret.KeepNewest != nil && i < *ret.KeepNewest) ||
			(ret.KeepYoungerThan != nil && now.Sub(time.Unix(0, v.Start)) < time.Duration(*ret.KeepYoungerThan)) ||
			(keepPattern != nil && keepPattern.MatchString(v.Tag))
		if !keep {
			out = append(out, v)
		}
	}
	return out, nil
}

// enforceRetention deletes the tags retention condemns, each only if it
// still points where it did when condemned and as many newer versions as
// were kept are still live, and returns those it deleted.
func (reg *Registry) enforceRetention(ctx context.Context, name string, p *tagPolicy) ([]metadata.TagEvent, error) {
	doomed, err := reg.condemned(ctx, name, p)
	if err != nil {
		return nil, err
	}
	minNewer := 1 // the newest is always kept
	if k := p.Retention.KeepNewest; k != nil {
		minNewer = max(minNewer, *k)
	}
	return reg.deleteCondemned(ctx, name, doomed, minNewer)
}

// deleteCondemned deletes the tags condemned returned, each only if it
// still points where it did then and at least minNewer newer versions are
// live, and returns those it deleted.
func (reg *Registry) deleteCondemned(ctx context.Context, name string, doomed []metadata.TagEvent, minNewer int) ([]metadata.TagEvent, error) {
	var deleted []metadata.TagEvent
	for _, e := range doomed {
		err := reg.db.InTx(ctx, func(tx *metadata.Tx) error {
			_, err := tx.DeleteTag(ctx, name, e.Tag, metadata.Change{Actor: retentionActor, Action: metadata.ActionRetention,
				Expect: &e.Digest, MinNewer: minNewer})
			return err
		})
		var conflict *metadata.TagConflictError
		switch {
		case errors.As(err, &conflict) || errors.Is(err, metadata.ErrNotFound) || errors.Is(err, metadata.ErrKept):
			continue // changed meanwhile: no longer this decision's to make
		case err != nil:
			return deleted, err
		}
		deleted = append(deleted, e)
	}
	if len(deleted) > 0 {
		reg.log.Info("retention", "repository", name, "deleted", len(deleted))
	}
	return deleted, nil
}

// EnforceRetention applies every repository's retention rules and returns
// how many tags it deleted. Replicas may run it at once: each deletion is
// conditional, so none is made twice.
func (reg *Registry) EnforceRetention(ctx context.Context) (int, error) {
	total := 0
	for last := ""; ; {
		names, err := reg.db.Repositories(ctx, last, 100)
		if err != nil || len(names) == 0 {
			return total, err
		}
		rules, err := reg.policies.rules(ctx)
		if err != nil {
			return total, err
		}
		for _, name := range names {
			p, err := reg.policies.resolve(rules, name)
			if err != nil {
				return total, err
			}
			deleted, err := reg.enforceRetention(ctx, name, p)
			total += len(deleted)
			if err != nil {
				return total, err
			}
		}
		last = names[len(names)-1]
	}
}

// retention shows what a repository's retention rules would delete (GET,
// a dry run), or deletes it now (POST).
//
// GET|POST /admin/v1/repositories/<name>/retention
func (reg *Registry) retention(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	p, err := reg.versionKeys(r, rt.name)
	if err != nil {
		return err
	}
	var tags []metadata.TagEvent
	if r.Method == http.MethodPost {
		tags, err = reg.enforceRetention(r.Context(), rt.name, p)
	} else {
		tags, err = reg.condemned(r.Context(), rt.name, p)
	}
	if err != nil {
		return err
	}
	type item struct {
		Tag    string     `json:"tag"`
		Digest oci.Digest `json:"digest"`
		Start  time.Time  `json:"start"`
	}
	out := make([]item, len(tags))
	for i, e := range tags {
		out[i] = item{e.Tag, e.Digest, jsonTime(e.Start)}
	}
	return writeJSON(w, "application/json", struct {
		Repository string     `json:"repository"`
		DryRun     bool       `json:"dryRun"`
		Retention  *Retention `json:"retention"`
		Delete     []item     `json:"delete"`
	}{rt.name, r.Method != http.MethodPost, p.Retention, out})
}
