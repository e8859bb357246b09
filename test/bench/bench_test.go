package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLinkNext(t *testing.T) {
	for _, tc := range []struct {
		name, header, want string
		ok                 bool
	}{
		{"distribution", `</v2/r/tags/list?last=42&n=100>; rel="next"`, "/v2/r/tags/list?last=42&n=100", true},
		{"unquoted", `</v2/r/tags/list?n=1&last=a>; rel=next`, "/v2/r/tags/list?n=1&last=a", true},
		{"absolute", `<https://reg.example/v2/r/tags/list?n=2>;rel="next"`, "https://reg.example/v2/r/tags/list?n=2", true},
		{"second of two", `</prev>; rel="prev", </next>; title="a, b"; rel="next"`, "/next", true},
		{"rel list", `</x>; rel="last next"`, "/x", true},
		{"no next", `</prev>; rel="prev"`, "", false},
		{"empty", ``, "", false},
		{"malformed", `/v2/r/tags/list; rel="next"`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := linkNext(tc.header)
			if got != tc.want || ok != tc.ok {
				t.Errorf("linkNext(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	r := newReport("bench -target a=http://x", []string{"a", "b"})
	r.set("a", "push", "push (MiB/s)", 1, 123.456)
	r.set("b", "push", "push (MiB/s)", 1, 7)
	r.set("a", "rps", "GET | s (req/s)", 0, 4999.6)
	r.fail("b", "tags_error", "tags failed", io.ErrUnexpectedEOF)
	var buf bytes.Buffer
	r.markdown(&buf)
	want := "```\nbench -target a=http://x\n```\n\n" +
		"| metric | a | b |\n" +
		"| --- | ---: | ---: |\n" +
		"| push (MiB/s) | 123.5 | 7.0 |\n" +
		`| GET \| s (req/s) | 5000 | – |` + "\n" +
		"| tags failed | – | error |\n"
	if got := buf.String(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1234": 1234, "64KiB": 64 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30, "2g": 2 << 30, "3 MB": 3 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1TiB", "-1", "1.5GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
	if got := formatSize(1 << 30); got != "1 GiB" {
		t.Errorf("formatSize(1 GiB) = %q", got)
	}
}

func TestParseTarget(t *testing.T) {
	got, err := parseTarget("berth=http://127.0.0.1:5000/,pid=42")
	if want := (targetSpec{name: "berth", url: "http://127.0.0.1:5000", pid: 42}); err != nil || got != want {
		t.Errorf("parseTarget = %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseTarget("http://h:1"); err != nil || got.name != "h:1" {
		t.Errorf("bare URL: %+v, %v", got, err)
	}
	for _, bad := range []string{"x=ftp://h", "x=http://h,pid=0", "x=http://h,foo=1"} {
		if _, err := parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) succeeded", bad)
		}
	}
}

// TestBlobReader checks that Read and WriteTo produce the same bytes and that ids differ.
func TestBlobReader(t *testing.T) {
	p := newPattern(1000, [32]byte{1})
	b := blob{p: p, id: 7, size: 2500} // wraps around the pattern twice
	var viaWriteTo bytes.Buffer
	if _, err := b.reader().WriteTo(&viaWriteTo); err != nil {
		t.Fatal(err)
	}
	viaRead, err := io.ReadAll(struct{ io.Reader }{b.reader()}) // hide WriteTo
	if err != nil {
		t.Fatal(err)
	}
	if len(viaRead) != 2500 || !bytes.Equal(viaRead, viaWriteTo.Bytes()) {
		t.Fatalf("Read gave %d bytes, WriteTo %d, equal %v", len(viaRead), viaWriteTo.Len(), bytes.Equal(viaRead, viaWriteTo.Bytes()))
	}
	if b.digest() != digestBytes(viaRead) {
		t.Error("digest differs from the digest of the bytes")
	}
	if other := (blob{p: p, id: 8, size: 2500}); other.digest() == b.digest() {
		t.Error("blobs 7 and 8 have the same digest")
	}
}

func TestCheckTags(t *testing.T) {
	if err := checkTags([]string{"2", "1", "3"}, 3); err != nil {
		t.Error(err)
	}
	for name, tags := range map[string][]string{
		"missing": {"1", "2"}, "twice": {"1", "2", "2"}, "foreign": {"1", "2", "03"},
	} {
		if err := checkTags(tags, 3); err == nil {
			t.Errorf("%s: checkTags accepted %q", name, tags)
		}
	}
}

func TestCheckRepositories(t *testing.T) {
	if err := checkRepositories([]string{"other", "p/1", "p/0", "p/2", "p-x/0"}, "p", 3); err != nil {
		t.Error(err)
	}
	for name, names := range map[string][]string{
		"missing": {"p/0", "p/1"}, "twice": {"p/0", "p/1", "p/2", "p/1"}, "other twice": {"o", "p/0", "p/1", "p/2", "o"},
		"foreign": {"p/0", "p/1", "p/2", "p/02"}, "out of range": {"p/0", "p/1", "p/2", "p/3"},
	} {
		if err := checkRepositories(names, "p", 3); err == nil {
			t.Errorf("%s: checkRepositories accepted %q", name, names)
		}
	}
}

// TestListNames follows a two-page catalog, as the reference registry paginates it.
func TestListNames(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("last") == "" {
			w.Header().Set("Link", `</v2/_catalog?last=b&n=2>; rel="next"`)
			io.WriteString(w, `{"repositories":["a","b"]}`)
			return
		}
		io.WriteString(w, `{"repositories":["c"]}`)
	}))
	defer srv.Close()
	c, err := newClient(srv.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	names, pages, err := c.listNames(t.Context(), "/v2/_catalog?n=2", "repositories")
	if err != nil || pages != 2 || !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("listNames = %q, %d pages, %v; want [a b c], 2 pages", names, pages, err)
	}
}

func TestStats(t *testing.T) {
	if got := median([]float64{5, 1, 3, 2}); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p50, p99 := percentile(d, 0.5), percentile(d, 0.99); p50 != 50 || p99 != 99 {
		t.Errorf("p50, p99 = %d, %d; want 50, 99", p50, p99)
	}
	stat := []byte("4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 12")
	if got, err := parseStatCPU(stat); err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	status := "Name:\tregistry\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
	if got, err := parseStatusKiB([]byte(status), "VmHWM"); err != nil || got != 51200 {
		t.Errorf("VmHWM = %d, %v", got, err)
	}
	if _, err := parseStatusKiB([]byte(status), "VmSwap"); err == nil || !strings.Contains(err.Error(), "VmSwap") {
		t.Errorf("missing field: %v", err)
	}
}
