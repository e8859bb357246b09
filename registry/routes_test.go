package registry

import (
	"testing"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path string
		want route
		ok   bool
	}{
		{"/v2/", route{endpoint: epBase}, true},
		{"/v2", route{endpoint: epBase}, true},
		{"/v2/_catalog", route{endpoint: epCatalog}, true},
		{"/v2/a/b/manifests/latest", route{epManifest, "a/b", "latest"}, true},
		{"/v2/a/blobs/sha256:ab", route{epBlob, "a", "sha256:ab"}, true},
		{"/v2/a/b/blobs/uploads/", route{epUploads, "a/b", ""}, true},
		{"/v2/a/blobs/uploads", route{epUploads, "a", ""}, true},
		{"/v2/a/blobs/uploads/0123", route{epUpload, "a", "0123"}, true},
		{"/v2/a/tags/list", route{epTags, "a", ""}, true},
		{"/v2/a/referrers/sha256:ab", route{epReferrers, "a", "sha256:ab"}, true},
		{"/v2/a/b/_oci/tag-history/latest", route{epTagHistory, "a/b", "latest"}, true},
		{"/v2/a/manifests/_oci/tag-history/x", route{epTagHistory, "a/manifests", "x"}, true},
		{"/v2/_oci/tag-history/latest", route{}, false},
		{"/v2/a/_oci/tag-history", route{}, false},
		// Endpoint words inside a name belong to the name.
		{"/v2/blobs/manifests/x", route{epManifest, "blobs", "x"}, true},
		{"/v2/x/manifests/blobs/sha256:ab", route{epBlob, "x/manifests", "sha256:ab"}, true},
		{"/v2/x/tags/list/manifests/1", route{epManifest, "x/tags/list", "1"}, true},
		// Bad names are routed and then refused by validation.
		{"/v2/../x/tags/list", route{epTags, "../x", ""}, true},
		{"/v2/a/b", route{}, false},
		{"/v2/a/manifests", route{}, false},
		{"/v3/", route{}, false},
		{"/", route{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := parseRoute(tt.path)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("parseRoute(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"0-99", 0, 99, true},
		{"100-100", 100, 100, true},
		{"bytes 5-9", 5, 9, true},
		{"bytes=5-9", 5, 9, true},
		{"9-5", 0, 0, false},
		{"-5", 0, 0, false},
		{"5-", 0, 0, false},
		{"-1-5", 0, 0, false},
		{"+1-5", 0, 0, false},
		{"1-+5", 0, 0, false},
		{"a-b", 0, 0, false},
		{"", 0, 0, false},
		{"0-99999999999999999999", 0, 0, false},
		{"bytes */100", 0, 0, false},
	}
	for _, tt := range tests {
		start, end, err := parseContentRange(tt.in)
		if (err == nil) != tt.ok || start != tt.start || end != tt.end {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, start, end, err, tt.start, tt.end, tt.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-99", "bytes 1-2", "bytes=3-4", "9-5", "-", "1-", "+1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseContentRange(s)
		if err != nil {
			return
		}
		if start < 0 || end < start {
			t.Fatalf("parseContentRange(%q) accepted %d-%d", s, start, end)
		}
	})
}
