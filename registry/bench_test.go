package registry

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

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
