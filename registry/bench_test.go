package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// BenchmarkGetManifest measures the handler path of a manifest GET by tag:
// routing, one indexed query, headers, the log line.
func BenchmarkGetManifest(b *testing.B) {
	s := newServer(b)
	s.pushImage("app", "v1", []byte("layer"))
	h := s.handler
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/v2/app/manifests/v1", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkPushBlob measures a docker-style blob push over a real loopback
// connection: POST, one streaming PATCH, PUT ?digest=, into disk storage.
func BenchmarkPushBlob(b *testing.B) {
	s := newServer(b)
	data := make([]byte, 64<<20)
	rand.Read(data)
	d := oci.FromBytes(data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		repo := fmt.Sprintf("app%d", i) // a new repository, so nothing is already linked
		loc := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil).Header.Get("Location")
		s.do("PATCH", loc, data).expect(b, http.StatusAccepted, "")
		s.do("PUT", loc+"?digest="+string(d), nil).expect(b, http.StatusCreated, "")
		b.StopTimer()
		s.do("DELETE", "/v2/"+repo+"/blobs/"+string(d), nil)
		s.store.Delete(context.Background(), d) // so the next push writes it again
		b.StartTimer()
	}
}

// BenchmarkAdminFirstPages measures the first page of the versions of a
// repository with 10,000 numbered tags, and of the history of a tag moved
// 10,000 times, through the handler, on SQLite and on PostgreSQL.
func BenchmarkAdminFirstPages(b *testing.B) {
	for _, be := range []string{"sqlite", "postgres"} {
		b.Run(be, func(b *testing.B) {
			url := ""
			if be == "postgres" {
				url = testserver.Postgres(b)
			}
			benchmarkAdminFirstPages(b, newServer(b, withPostgres(url)))
		})
	}
}

func benchmarkAdminFirstPages(b *testing.B, s *testServer) {
	var ms [2][]byte
	for i := range ms {
		ms[i], _ = s.pushImage("app", "latest", []byte{byte(i)})
	}
	ctx := context.Background()
	err := s.db.InTx(ctx, func(tx *metadata.Tx) error {
		put := func(m []byte, tags ...string) error {
			parsed, err := oci.ParseManifest(oci.MediaTypeImageManifest, m)
			if err != nil {
				return err
			}
			return tx.PutManifest(ctx, "app", oci.FromBytes(m), parsed, m, tags, metadata.Change{Action: "push"})
		}
		tags := make([]string, 10000)
		for i := range tags {
			tags[i] = fmt.Sprint(i + 1)
		}
		if err := put(ms[0], tags...); err != nil {
			return err
		}
		for i := range 10000 { // "moving" moves 10,000 times
			if err := put(ms[i%2], "moving"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/admin/v1/repositories/app/versions", "/admin/v1/repositories/app/tags/moving/history"} {
		b.Run(path[len("/admin/v1/repositories/app/"):], func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				s.handler.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// BenchmarkPutTag measures a manifest PUT under a new tag through the
// handler: the policy lookup, the transaction with the tag's history row.
func BenchmarkPutTag(b *testing.B) {
	s := newServer(b)
	m, _ := s.pushImage("app", "latest", []byte("layer"))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/v2/app/manifests/t%d", i), bytes.NewReader(m))
		req.Header.Set("Content-Type", oci.MediaTypeImageManifest)
		w := httptest.NewRecorder()
		s.handler.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
