package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// pastClock is the real time set back by back: the rows the database writes
// meanwhile look that old to retention, which reads the real time.
type pastClock struct{ back atomic.Int64 }

func (c *pastClock) Now() time.Time { return time.Now().Add(-time.Duration(c.back.Load())) }

func (s *testServer) registry() *Registry { return s.handler.(*Registry) }

func (s *testServer) setPolicy(repositories, body string) {
	s.t.Helper()
	s.do("PUT", "/admin/v1/repositories/"+repositories+"/policy", []byte(body)).expect(s.t, http.StatusOK, "")
}

// retention asks for a repository's retention (GET: what it would delete;
// POST: delete it) and returns the tags in the answer.
func (s *testServer) retention(method, repo string) []string {
	s.t.Helper()
	r := s.do(method, "/admin/v1/repositories/"+repo+"/retention", nil)
	r.expect(s.t, http.StatusOK, "")
	var body struct {
		Repository string
		DryRun     bool
		Delete     []struct {
			Tag    string
			Digest oci.Digest
		}
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Repository != repo || body.DryRun != (method == "GET") || body.Delete == nil {
		s.t.Fatalf("%s retention of %s: %v: %s", method, repo, err, r.body)
	}
	tags := []string{}
	for _, d := range body.Delete {
		tags = append(tags, d.Tag)
	}
	return tags
}

func (s *testServer) liveTags(repo string) []string {
	s.t.Helper()
	tags, err := s.db.Tags(s.t.Context(), repo, "", 1000)
	if err != nil {
		s.t.Fatal(err)
	}
	return tags
}

// TestRetention: what each rule keeps, through the admin API: a dry run
// deletes nothing, enforcing deletes what the dry run listed, and then there
// is nothing left to delete. The newest version is always kept, moving tags
// are never touched, and without a retention rule nothing is deleted.
func TestRetention(t *testing.T) {
	clock := &pastClock{}
	s := newServer(t, withClock(clock.Now))
	type push struct {
		tag string
		ago time.Duration
	}
	now := func(tags ...string) []push {
		var out []push
		for _, tag := range tags {
			out = append(out, push{tag, 0})
		}
		return out
	}
	old, young := 48*time.Hour, time.Hour
	tests := []struct {
		repo   string
		policy string // "": none stored
		pushes []push
		delete []string // newest first
	}{
		{"keep-newest", `{"retention":{"keepNewest":2}}`, now("1", "2", "3", "4", "5", "latest"), []string{"3", "2", "1"}},
		{"keep-younger", `{"retention":{"keepYoungerThan":"24h"}}`,
			// 10 is the newest version, so kept, however old.
			[]push{{"1", old}, {"2", old}, {"3", young}, {"10", old}, {"latest", old}}, []string{"2", "1"}},
		{"keep-pattern", `{"retention":{"keepPattern":"^v1\\."}}`, now("v1.0.0", "v1.1.0", "1.5.0", "v2.0.0", "latest"), []string{"1.5.0"}},
		{"keep-either", `{"retention":{"keepNewest":2,"keepYoungerThan":"24h"}}`,
			[]push{{"1", old}, {"2", old}, {"3", young}, {"4", old}, {"5", old}}, []string{"2", "1"}},
		{"keep-newest-only", `{"retention":{"keepNewest":1}}`, now("1", "2", "latest"), []string{"1"}},
		{"no-retention", `{"refuseLower":false}`, []push{{"1", old}, {"2", old}, {"3", old}}, []string{}},
		{"no-policy", "", []push{{"1", old}, {"2", old}}, []string{}},
	}
	for _, tt := range tests {
		for _, p := range tt.pushes {
			clock.back.Store(int64(p.ago))
			s.pushImage(tt.repo, p.tag, []byte(tt.repo+p.tag))
		}
		clock.back.Store(0)
		if tt.policy != "" {
			s.setPolicy(tt.repo, tt.policy)
		}
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			before := s.liveTags(tt.repo)
			if got := s.retention("GET", tt.repo); !slices.Equal(got, tt.delete) {
				t.Fatalf("dry run would delete %q, want %q", got, tt.delete)
			}
			if got := s.liveTags(tt.repo); !slices.Equal(got, before) {
				t.Fatalf("a dry run changed the tags: %q, then %q", before, got)
			}
			if got := s.retention("POST", tt.repo); !slices.Equal(got, tt.delete) {
				t.Fatalf("retention deleted %q, want %q", got, tt.delete)
			}
			want := slices.DeleteFunc(slices.Clone(before), func(tag string) bool { return slices.Contains(tt.delete, tag) })
			if got := s.liveTags(tt.repo); !slices.Equal(got, want) {
				t.Fatalf("tags after retention: %q, want %q", got, want)
			}
			for _, tag := range tt.delete {
				h, err := s.db.TagHistoryPage(t.Context(), tt.repo, tag, 0, 1)
				if err != nil || len(h) != 1 || h[0].EndAction != metadata.ActionRetention || h[0].EndedBy != retentionActor {
					t.Errorf("history of %s: %+v, %v; want it ended by retention", tag, h, err)
				}
			}
			if got := s.retention("POST", tt.repo); len(got) != 0 {
				t.Errorf("retention deleted %q more", got)
			}
		})
	}
	// The periodic run finds nothing left either.
	if n, err := s.registry().EnforceRetention(t.Context()); n != 0 || err != nil {
		t.Errorf("EnforceRetention = %d, %v; want nothing to delete", n, err)
	}
	s.do("GET", "/admin/v1/repositories/nowhere/retention", nil).expect(t, http.StatusNotFound, codeNameUnknown)
}

// TestRetentionSkipsChangedTags: a tag that moved, or was deleted, between
// retention's decision and its deletion is left alone.
func TestRetentionSkipsChangedTags(t *testing.T) {
	s := newServer(t)
	for _, tag := range []string{"0", "1", "2", "3"} {
		s.pushImage("app", tag, []byte("layer "+tag))
	}
	_, other := s.pushImage("app", "latest", []byte("another layer"))
	s.setPolicy("app", `{"immutableNumbered":false,"retention":{"keepNewest":1}}`)
	reg := s.registry()
	p, err := reg.policies.forRepository(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := reg.condemned(t.Context(), "app", p)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, e := range doomed {
		planned = append(planned, e.Tag)
	}
	if !slices.Equal(planned, []string{"2", "1", "0"}) {
		t.Fatalf("condemned %q", planned)
	}

	s.do("PUT", "/admin/v1/repositories/app/tags/2", []byte(fmt.Sprintf(`{"digest":%q}`, other))).expect(t, http.StatusOK, "")
	s.do("DELETE", "/admin/v1/repositories/app/tags/0", nil).expect(t, http.StatusOK, "")

	deleted, err := reg.deleteCondemned(t.Context(), "app", doomed, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0].Tag != "1" {
		t.Fatalf("deleted %+v, want only 1", deleted)
	}
	if got := s.liveTags("app"); strings.Join(got, " ") != "2 3 latest" {
		t.Fatalf("tags %q", got)
	}
	h, err := s.db.TagHistoryPage(t.Context(), "app", "2", 0, 1)
	if err != nil || len(h) != 1 || h[0].Digest != other || h[0].End != 0 {
		t.Fatalf("2 after retention: %+v, %v; want it still at %s", h, err, other)
	}
}
