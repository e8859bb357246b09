package metadata_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

func TestPutManifestResolves(t *testing.T) { forEachBackend(t, testPutManifestResolves) }

func testPutManifestResolves(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config, layer := newBlob("config"), newBlob("layer")
	link(t, db, "app", config, layer)
	m := image(t, config, layer)
	mustPut(t, db, "app", m, "latest", "42")
	for _, ref := range []string{"latest", "42", string(m.digest)} {
		got := resolve(t, db, "app", ref)
		if got.Digest != m.digest || !bytes.Equal(got.Payload, m.payload) || got.Size() != int64(len(m.payload)) {
			t.Errorf("Resolve(%s) = %s with %d bytes, want %s with the exact payload", ref, got.Digest, got.Size(), m.digest)
		}
		if got.MediaType != oci.MediaTypeImageManifest || got.ArtifactType != "application/vnd.oci.image.config.v1+json" || got.Subject != "" {
			t.Errorf("Resolve(%s) = %+v", ref, got)
		}
	}
	wantUnresolved(t, db, "other", string(m.digest))
	wantUnresolved(t, db, "app", "missing")
}

// TestPutManifestRefuses: a refused manifest leaves no trace at all.
func TestPutManifestRefuses(t *testing.T) { forEachBackend(t, testPutManifestRefuses) }

func testPutManifestRefuses(t *testing.T, be backend) {
	config, layer, other := newBlob("config"), newBlob("layer"), newBlob("other")
	child := image(t, config, layer)
	tests := []struct {
		name    string
		linked  []blob // linked in "app" first
		before  []manifest
		put     func(t *testing.T) manifest
		wantErr error
	}{
		{"layer not linked", []blob{config}, nil, func(t *testing.T) manifest { return image(t, config, layer) }, metadata.ErrMissingReference},
		{"config not linked", []blob{layer}, nil, func(t *testing.T) manifest { return image(t, config, layer) }, metadata.ErrMissingReference},
		{"layer only in another repository", []blob{config}, nil, func(t *testing.T) manifest { return image(t, config, other) }, metadata.ErrMissingReference},
		{"layer size differs", []blob{config, layer}, nil, func(t *testing.T) manifest {
			return image(t, config, blob{layer.digest, layer.size + 1})
		}, oci.ErrManifestInvalid},
		{"index child missing", []blob{config, layer}, nil, func(t *testing.T) manifest { return index(t, child) }, metadata.ErrMissingReference},
		{"index child only in another repository", nil, nil, func(t *testing.T) manifest { return index(t, child) }, metadata.ErrMissingReference},
		{"index child size differs", []blob{config, layer}, []manifest{child}, func(t *testing.T) manifest {
			c := child
			c.payload = append(bytes.Clone(c.payload), ' ')
			return index(t, c)
		}, oci.ErrManifestInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := be.open(t, newClock())
			link(t, db, "elsewhere", config, layer, other)
			mustPut(t, db, "elsewhere", child)
			if len(tt.linked) > 0 {
				link(t, db, "app", tt.linked...)
			}
			for _, m := range tt.before {
				mustPut(t, db, "app", m)
			}
			m := tt.put(t)
			if err := put(t, db, "app", m, "alice", "latest"); !errors.Is(err, tt.wantErr) {
				t.Fatalf("PutManifest = %v, want %v", err, tt.wantErr)
			}
			wantUnresolved(t, db, "app", string(m.digest))
			wantUnresolved(t, db, "app", "latest")
			if got := tags(t, db, "app"); len(got) != 0 {
				t.Errorf("tags after a refused push: %q", got)
			}
			if h, err := db.TagHistory(t.Context(), "app", "latest"); err != nil || len(h) != 0 {
				t.Errorf("tag history after a refused push: %+v, %v", h, err)
			}
			if ok, _ := db.RepositoryExists(t.Context(), "app"); ok != (len(tt.linked) > 0 || len(tt.before) > 0) {
				t.Errorf("RepositoryExists = %v after a refused first push", ok)
			}
		})
	}
}

func TestPutManifestForeignLayer(t *testing.T) { forEachBackend(t, testPutManifestForeignLayer) }

func testPutManifestForeignLayer(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config, local := newBlob("config"), newBlob("local layer")
	foreign := newBlob("windows base layer")
	link(t, db, "app", config, local)
	m := parse(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeDockerManifest,
		"config":        descriptor("application/vnd.docker.container.image.v1+json", config),
		"layers": []any{
			map[string]any{
				"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
				"digest":    foreign.digest, "size": foreign.size,
				"urls": []string{"https://mcr.microsoft.com/v2/windows/blobs/" + string(foreign.digest)},
			},
			descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", local),
		},
	})
	mustPut(t, db, "app", m, "win")
	if got := resolve(t, db, "app", "win"); got.Digest != m.digest || got.MediaType != oci.MediaTypeDockerManifest {
		t.Errorf("Resolve(win) = %+v", got)
	}
	if _, err := db.BlobInRepo(t.Context(), "app", foreign.digest); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a foreign layer became linked: %v", err)
	}
}

func TestPutIndex(t *testing.T) { forEachBackend(t, testPutIndex) }

func testPutIndex(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config, amd, arm := newBlob("config"), newBlob("amd64"), newBlob("arm64")
	link(t, db, "app", config, amd, arm)
	a, b := image(t, config, amd), image(t, config, arm)
	mustPut(t, db, "app", a)
	mustPut(t, db, "app", b)
	idx := index(t, a, b)
	mustPut(t, db, "app", idx, "multi")
	got := resolve(t, db, "app", "multi")
	if got.Digest != idx.digest || got.MediaType != oci.MediaTypeImageIndex || !bytes.Equal(got.Payload, idx.payload) {
		t.Errorf("Resolve(multi) = %+v", got)
	}
}

func TestPutSameManifestInTwoRepositories(t *testing.T) {
	forEachBackend(t, testPutSameManifestInTwoRepositories)
}

func testPutSameManifestInTwoRepositories(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config, layer := newBlob("config"), newBlob("layer")
	m := image(t, config, layer)
	for _, repo := range []string{"a", "b"} {
		link(t, db, repo, config, layer)
		mustPut(t, db, repo, m, "latest")
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "a", m.digest, metadata.Change{Actor: "x", Action: metadata.ActionDelete})
	})
	wantUnresolved(t, db, "a", "latest")
	if got := resolve(t, db, "b", "latest"); !bytes.Equal(got.Payload, m.payload) {
		t.Error("deleting from a changed b")
	}
}

func TestDeleteManifest(t *testing.T) { forEachBackend(t, testDeleteManifest) }

func testDeleteManifest(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	link(t, db, "app", config, l1, l2)
	m1, m2 := image(t, config, l1), image(t, config, l2)
	mustPut(t, db, "app", m1, "a", "b")
	mustPut(t, db, "app", m2, "c")
	deleted := c.tick()
	del := func(repo string, d oci.Digest) error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error {
			return tx.DeleteManifest(t.Context(), repo, d, metadata.Change{Actor: "admin", Action: metadata.ActionDelete})
		})
	}
	if err := del("app", m1.digest); err != nil {
		t.Fatalf("DeleteManifest: %v", err)
	}
	wantUnresolved(t, db, "app", string(m1.digest))
	for _, tag := range []string{"a", "b"} {
		wantUnresolved(t, db, "app", tag)
		h, err := db.TagHistory(t.Context(), "app", tag)
		if err != nil || len(h) != 1 {
			t.Fatalf("TagHistory(%s) = %+v, %v", tag, h, err)
		}
		if h[0].End != deleted.UnixNano() || h[0].EndedBy != "admin" || h[0].EndAction != metadata.ActionDelete {
			t.Errorf("TagHistory(%s) = %+v, want ended at %d by admin with delete", tag, h[0], deleted.UnixNano())
		}
	}
	if got := tags(t, db, "app"); len(got) != 1 || got[0] != "c" {
		t.Errorf("tags after delete = %q, want [c]", got)
	}
	if got := resolve(t, db, "app", "c"); got.Digest != m2.digest {
		t.Errorf("c moved to %s", got.Digest)
	}
	for _, tt := range []struct{ repo, why string }{{"app", "already deleted"}, {"nowhere", "unknown repository"}} {
		if err := del(tt.repo, m1.digest); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("DeleteManifest, %s = %v, want ErrNotFound", tt.why, err)
		}
	}
}

func TestReferrers(t *testing.T) { forEachBackend(t, testReferrers) }

func testReferrers(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	config, layer, empty := newBlob("config"), newBlob("layer"), newBlob("{}")
	subject := image(t, config, layer)
	link(t, db, "app", config, layer, empty)
	link(t, db, "other", empty)
	mustPut(t, db, "app", subject, "v1")
	c.tick()
	sbom := artifact(t, "application/spdx+json", empty, subject)
	mustPut(t, db, "app", sbom)
	c.tick()
	sig := artifact(t, "application/vnd.dev.cosign.artifact.sig.v1+json", empty, subject)
	mustPut(t, db, "app", sig)
	mustPut(t, db, "other", artifact(t, "application/x-elsewhere", empty, subject))

	got, err := db.Referrers(t.Context(), "app", subject.digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Digest != sbom.digest || got[1].Digest != sig.digest {
		t.Fatalf("Referrers = %v, want sbom then signature", digests(got))
	}
	if got[0].ArtifactType != "application/spdx+json" || got[0].Subject != subject.digest || !bytes.Equal(got[0].Payload, sbom.payload) {
		t.Errorf("Referrers[0] = %+v", got[0])
	}
	if got, err := db.Referrers(t.Context(), "app", sbom.digest); err != nil || len(got) != 0 {
		t.Errorf("Referrers of a manifest nothing refers to = %v, %v", digests(got), err)
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "app", sbom.digest, metadata.Change{Action: metadata.ActionDelete})
	})
	if got, err := db.Referrers(t.Context(), "app", subject.digest); err != nil || len(got) != 1 || got[0].Digest != sig.digest {
		t.Errorf("Referrers after deleting the sbom = %v, %v", digests(got), err)
	}
}

func digests(ms []*metadata.ManifestRecord) []oci.Digest {
	var out []oci.Digest
	for _, m := range ms {
		out = append(out, m.Digest)
	}
	return out
}
