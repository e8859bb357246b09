package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// benchCatalog creates many repositories, each holding the one-layer image under one tag, then
// times a full catalog listing and a paginated walk. The catalog lists the whole registry, so it
// also holds the other benchmarks' repositories (and anything the registry held before); the
// check is that each repository created here appears exactly once, and no name twice.
func (r *runner) benchCatalog(ctx context.Context, t *target) error {
	prefix, n := r.repo("catalog"), r.cfg.repos
	name := func(i int) string { return prefix + "/" + strconv.Itoa(i) }
	start := time.Now()
	// The first repository gets the blobs by upload, the others by a cross-repository mount,
	// as docker does for a base layer it knows a registry has: the benchmark is about
	// repositories, not bytes.
	first := name(0)
	if err := r.pushSmallImage(ctx, t, first); err != nil {
		return err
	}
	if err := t.c.putManifest(ctx, first, "latest", r.small.manifest); err != nil {
		return err
	}
	err := parallel(ctx, r.cfg.repoConc, n-1, func(ctx context.Context, _, i int) error {
		repo := name(i + 1)
		if err := t.c.mountBlob(ctx, repo, first, r.small.layerDigests[0], r.small.layers[0]); err != nil {
			return err
		}
		if err := t.c.mountBlob(ctx, repo, first, r.small.configDigest, r.small.config); err != nil {
			return err
		}
		return t.c.putManifest(ctx, repo, "latest", r.small.manifest)
	})
	if err != nil {
		return fmt.Errorf("creating repositories: %w", err)
	}
	r.rep.set(t.name, "catalog_push", fmt.Sprintf("create %d repositories (mount 2 blobs, PUT manifest), %d parallel (s)", n, r.cfg.repoConc),
		2, time.Since(start).Seconds())

	for _, l := range []struct {
		key, label, query string
	}{
		{"catalog_list", fmt.Sprintf("_catalog of %d repositories, one GET ?n=%d (ms, median of %d)", n, r.cfg.catalogN, r.cfg.listRuns), fmt.Sprintf("?n=%d", r.cfg.catalogN)},
		{"catalog_walk", fmt.Sprintf("_catalog walk, n=%d following Link (ms, median of %d)", r.cfg.page, r.cfg.listRuns), fmt.Sprintf("?n=%d", r.cfg.page)},
	} {
		var runs []float64
		for i := range r.cfg.listRuns {
			start := time.Now()
			names, pages, err := t.c.listNames(ctx, "/v2/_catalog"+l.query, "repositories")
			elapsed := time.Since(start)
			if err != nil {
				return err
			}
			if err := checkRepositories(names, prefix, n); err != nil {
				return fmt.Errorf("_catalog%s (%d pages): %w", l.query, pages, err)
			}
			if i == 0 && l.key == "catalog_list" {
				note := fmt.Sprintf("%s: _catalog listed %d repositories, %d of them the catalog benchmark's", t.name, len(names), n)
				if pages > 1 {
					note += fmt.Sprintf("; ?n=%d answered in %d pages (Link followed, time included)", r.cfg.catalogN, pages)
				}
				r.rep.Notes = append(r.rep.Notes, note)
			}
			runs = append(runs, ms(elapsed))
		}
		r.rep.set(t.name, l.key, l.label, 1, median(runs))
	}
	return nil
}

// checkRepositories verifies that names holds "<prefix>/0" … "<prefix>/<n-1>" each exactly once,
// and no name twice; names outside prefix are other repositories of the registry.
func checkRepositories(names []string, prefix string, n int) error {
	seen := make(map[string]bool, len(names))
	found := 0
	for _, name := range names {
		if seen[name] {
			return fmt.Errorf("repository %q listed twice", name)
		}
		seen[name] = true
		rest, ok := strings.CutPrefix(name, prefix+"/")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(rest)
		if err != nil || i < 0 || i >= n || strconv.Itoa(i) != rest {
			return fmt.Errorf("unexpected repository %q", name)
		}
		found++
	}
	if found != n {
		return fmt.Errorf("%d of the %d repositories listed", found, n)
	}
	return nil
}
