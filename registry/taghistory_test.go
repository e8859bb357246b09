package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/oci"
)

type historyIndex struct {
	SchemaVersion int
	MediaType     string
	Manifests     []oci.Descriptor
	Annotations   map[string]string
}

// history GETs a tag-history path, expecting a 200 index.
func (s *testServer) history(t *testing.T, path string) (*response, historyIndex) {
	t.Helper()
	r := s.do("GET", path, nil)
	r.expect(t, http.StatusOK, "")
	var idx historyIndex
	if err := json.Unmarshal(r.body, &idx); err != nil {
		t.Fatalf("%s: %v: %s", path, err, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != oci.MediaTypeImageIndex || idx.SchemaVersion != 2 || idx.MediaType != oci.MediaTypeImageIndex {
		t.Fatalf("%s: not an image index: %s %s", path, ct, r.body)
	}
	if idx.Manifests == nil {
		t.Fatalf("%s: manifests is not a list: %s", path, r.body)
	}
	return r, idx
}

// walk follows the Link headers from path (which ends in ? or &) with
// every page size and checks that the pages hold want, full but for the
// last, and that the last is not empty.
func (s *testServer) walk(t *testing.T, path string, want []oci.Descriptor) {
	t.Helper()
	for n := 1; n <= len(want)+1; n++ {
		pages := s.follow(t, fmt.Sprintf("%sn=%d", path, n))
		var walked []oci.Descriptor
		for i, p := range pages {
			var idx historyIndex
			json.Unmarshal(p.body, &idx)
			if len(idx.Manifests) > n || (i < len(pages)-1 && len(idx.Manifests) != n) || len(idx.Manifests) == 0 {
				t.Fatalf("%sn=%d: page %d has %d entries", path, n, i, len(idx.Manifests))
			}
			walked = append(walked, idx.Manifests...)
		}
		if len(walked) != len(want) {
			t.Fatalf("%sn=%d: walked %d entries, want %d", path, n, len(walked), len(want))
		}
		for i := range walked {
			if eventOf(t, walked[i]) != eventOf(t, want[i]) || !timestamp(walked[i]).Equal(timestamp(want[i])) {
				t.Fatalf("%sn=%d: entry %d is %+v, want %+v", path, n, i, walked[i], want[i])
			}
		}
	}
}

// since returns the query for the entries newer than entries[i], and them.
func since(entries []oci.Descriptor, i int) (string, []oci.Descriptor) {
	at := timestamp(entries[i])
	return "since=" + url.QueryEscape(entries[i].Annotations[annotationTagTimestamp]) + "&",
		slices.DeleteFunc(slices.Clone(entries), func(d oci.Descriptor) bool { return !timestamp(d).After(at) })
}

// event is what a test checks of one entry of the history.
type event struct {
	kind, action string
	digest       oci.Digest
	mediaType    string
	size         int64
}

func eventOf(t *testing.T, d oci.Descriptor) event {
	t.Helper()
	if _, err := time.Parse(time.RFC3339Nano, d.Annotations[annotationTagTimestamp]); err != nil {
		t.Fatalf("entry %s: timestamp: %v", d.Digest, err)
	}
	return event{d.Annotations[annotationTagEvent], d.Annotations[annotationTagAction], d.Digest, d.MediaType, d.Size}
}

func timestamp(d oci.Descriptor) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, d.Annotations[annotationTagTimestamp])
	return t
}

// pushHistory gives team/app:latest the history image A, moved to image B,
// deleted, pushed as index C, and ended by deleting C. It returns the
// events newest first.
func pushHistory(t *testing.T, s *testServer) []event {
	t.Helper()
	ma, da := s.pushImage("team/app", "latest", []byte("layer a"))
	mb, db := s.pushImage("team/app", "latest", []byte("layer b"))
	s.do("DELETE", "/v2/team/app/manifests/latest", nil).expect(t, http.StatusAccepted, "")
	mc := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s,%s]}`, oci.MediaTypeImageIndex,
		desc(oci.MediaTypeImageManifest, da, len(ma)), desc(oci.MediaTypeImageManifest, db, len(mb))))
	dc := oci.FromBytes(mc)
	s.do("PUT", "/v2/team/app/manifests/latest", mc, "Content-Type", oci.MediaTypeImageIndex).expect(t, http.StatusCreated, "")
	s.do("DELETE", "/v2/team/app/manifests/"+string(dc), nil).expect(t, http.StatusAccepted, "")

	a := event{"created", "push", da, oci.MediaTypeImageManifest, int64(len(ma))}
	b := event{"created", "push", db, oci.MediaTypeImageManifest, int64(len(mb))}
	c := event{"created", "push", dc, oci.MediaTypeImageIndex, int64(len(mc))}
	bGone, cGone := b, c
	bGone.kind, bGone.action = "deleted", "delete"
	cGone.kind, cGone.action = "deleted", "delete"
	return []event{cGone, c, bGone, b, a}
}

func TestTagHistoryIndex(t *testing.T) {
	s := newServer(t)
	want := pushHistory(t, s)

	r, idx := s.history(t, "/v2/team/app/_oci/tag-history/latest")
	if r.Header.Get("Link") != "" || idx.Annotations[annotationTagName] != "latest" {
		t.Fatalf("index: Link %q, annotations %v", r.Header.Get("Link"), idx.Annotations)
	}
	var got []event
	for i, d := range idx.Manifests {
		got = append(got, eventOf(t, d))
		if i > 0 && timestamp(d).After(timestamp(idx.Manifests[i-1])) {
			t.Errorf("entry %d is newer than entry %d", i, i-1)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history\n%+v\nwant\n%+v", got, want)
	}
	all := idx.Manifests

	s.walk(t, "/v2/team/app/_oci/tag-history/latest?", all)
	// The oldest row since a time may hold no entry: A's push is at that
	// time, and its move to B is B's push.
	q, newer := since(all, 4)
	s.walk(t, "/v2/team/app/_oci/tag-history/latest?"+q, newer)
	for i := range 3 {
		s.pushImage("team/app", "moves", []byte{byte(i)})
	}
	_, moves := s.history(t, "/v2/team/app/_oci/tag-history/moves")
	q, newer = since(moves.Manifests, 2)
	s.walk(t, "/v2/team/app/_oci/tag-history/moves?"+q, newer)

	r = s.do("GET", "/v2/team/app/_oci/tag-history/latest?n=2&since=2000-01-01T00:00:00Z", nil)
	link := r.Header.Get("Link")
	if !strings.HasPrefix(link, "</v2/team/app/_oci/tag-history/latest?") || !strings.HasSuffix(link, `>; rel="next"`) ||
		!strings.Contains(link, "since=2000-01-01T00%3A00%3A00Z") || !strings.Contains(link, "n=2") {
		t.Errorf("Link %q does not keep the query", link)
	}

	// n=0 answers whether the extension is here: an empty index, no Link.
	r, idx = s.history(t, "/v2/team/app/_oci/tag-history/latest?n=0")
	if len(idx.Manifests) != 0 || r.Header.Get("Link") != "" {
		t.Errorf("n=0: %s, Link %q", r.body, r.Header.Get("Link"))
	}

	// Filters: a manifest's entries, and entries strictly before or after a time.
	filtered := func(query string, keep func(oci.Descriptor) bool) {
		t.Helper()
		_, idx := s.history(t, "/v2/team/app/_oci/tag-history/latest?"+query)
		want := slices.DeleteFunc(slices.Clone(all), func(d oci.Descriptor) bool { return !keep(d) })
		if len(idx.Manifests) != len(want) {
			t.Fatalf("%s: %d entries, want %d", query, len(idx.Manifests), len(want))
		}
		for i := range want {
			if eventOf(t, idx.Manifests[i]) != eventOf(t, want[i]) {
				t.Fatalf("%s: entry %d is %+v, want %+v", query, i, idx.Manifests[i], want[i])
			}
		}
	}
	b := all[3]
	filtered("digest="+string(b.Digest), func(d oci.Descriptor) bool { return d.Digest == b.Digest })
	ts := b.Annotations[annotationTagTimestamp]
	filtered("before="+url.QueryEscape(ts), func(d oci.Descriptor) bool { return timestamp(d).Before(timestamp(b)) })
	filtered("since="+url.QueryEscape(ts), func(d oci.Descriptor) bool { return timestamp(d).After(timestamp(b)) })
	filtered("since="+url.QueryEscape(ts)+"&before="+url.QueryEscape(all[0].Annotations[annotationTagTimestamp]),
		func(d oci.Descriptor) bool {
			return timestamp(d).After(timestamp(b)) && timestamp(d).Before(timestamp(all[0]))
		})
	filtered("before=0000-01-01T00:00:00Z", func(oci.Descriptor) bool { return false })
	filtered("since=9999-12-31T23:59:59Z", func(oci.Descriptor) bool { return false })
	filtered("before=9999-12-31T23:59:59%2B01:00&since=0001-01-02T00:00:00Z", func(oci.Descriptor) bool { return true })
	filtered("last=9223372036854775807", func(oci.Descriptor) bool { return true })

	// HEAD: the headers of the GET.
	get := s.do("GET", "/v2/team/app/_oci/tag-history/latest", nil)
	head := s.do("HEAD", "/v2/team/app/_oci/tag-history/latest", nil)
	head.expect(t, http.StatusOK, "")
	if len(head.body) != 0 || head.ContentLength != int64(len(get.body)) || head.Header.Get("Content-Type") != oci.MediaTypeImageIndex {
		t.Errorf("HEAD: length %d, body %q, type %q", head.ContentLength, head.body, head.Header.Get("Content-Type"))
	}

	// Nothing to tell is an empty index, never a 404: to clients of the
	// proposal a 404 means that the registry lacks the extension.
	for _, path := range []string{"/v2/team/app/_oci/tag-history/never", "/v2/team/none/_oci/tag-history/latest"} {
		if _, idx := s.history(t, path); len(idx.Manifests) != 0 {
			t.Errorf("%s: %+v", path, idx.Manifests)
		}
	}
}

// TestTagHistoryHostile: bad input is refused with the spec's codes, and
// changes nothing.
func TestTagHistoryHostile(t *testing.T) {
	s := newServer(t)
	s.pushImage("app", "latest", []byte("layer"))
	before := s.snapshot()
	const h = "/v2/app/_oci/tag-history/"
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/App/_oci/tag-history/latest", 400, codeNameInvalid},
		{"GET", "/v2/../app/_oci/tag-history/latest", 400, codeNameInvalid},
		{"GET", "/v2/app/_oci/tag-history/manifests/latest", 400, codeNameInvalid},
		{"GET", h + "-latest", 400, codeManifestInvalid},
		{"GET", h + "..", 400, codeManifestInvalid},
		{"GET", h + "", 400, codeManifestInvalid},
		{"GET", h + "a:b", 400, codeManifestInvalid},
		{"GET", h + strings.Repeat("a", 129), 400, codeManifestInvalid},
		{"GET", h + "latest%2Fx", 404, codeUnsupported},
		{"GET", h + "latest?n=-1", 400, codePaginationInvalid},
		{"GET", h + "latest?n=ten", 400, codePaginationInvalid},
		{"GET", h + "latest?n=99999999999999999999", 400, codePaginationInvalid},
		{"GET", h + "latest?last=x", 400, codePaginationInvalid},
		{"GET", h + "latest?last=0", 400, codePaginationInvalid},
		{"GET", h + "latest?last=-3", 400, codePaginationInvalid},
		{"GET", h + "latest?last=9223372036854775808", 400, codePaginationInvalid},
		{"GET", h + "latest?before=yesterday", 400, codeUnsupported},
		{"GET", h + "latest?before=2024-01-01", 400, codeUnsupported},
		{"GET", h + "latest?since=", 400, codeUnsupported},
		{"GET", h + "latest?digest=", 400, codeDigestInvalid},
		{"GET", h + "latest?digest=sha256:1", 400, codeDigestInvalid},
		{"GET", h + "latest?digest=md5:d41d8cd98f00b204e9800998ecf8427e", 400, codeDigestInvalid},
		{"POST", h + "latest", 405, codeUnsupported},
		{"DELETE", h + "latest", 405, codeUnsupported},
		{"PUT", h + "latest", 405, codeUnsupported},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			s.do(tt.method, tt.path, nil).expect(t, tt.status, tt.code)
			if after := s.snapshot(); after != before {
				t.Fatalf("stored state changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
