package oci_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
)

const (
	ociConfig     = "application/vnd.oci.image.config.v1+json"
	ociLayer      = "application/vnd.oci.image.layer.v1.tar+gzip"
	dockerConfig  = "application/vnd.docker.container.image.v1+json"
	dockerLayer   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	sbomType      = "application/spdx+json"
)

var (
	cfgDigest   = oci.FromBytes([]byte("config"))
	layerDigest = oci.FromBytes([]byte("layer"))
	subjDigest  = oci.FromBytes([]byte("subject"))
	childA      = oci.FromBytes([]byte("child a"))
	childB      = oci.FromBytes([]byte("child b"))
)

// desc is a descriptor as JSON sees it.
func desc(mediaType string, d oci.Digest, size int64) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": string(d), "size": size}
}

// doc marshals a manifest document; fields set to nil are left out.
func doc(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	m := map[string]any{}
	for k, v := range fields {
		if v != nil {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageManifest(t testing.TB, mediaType string, extra map[string]any) []byte {
	fields := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaType,
		"config":        desc(ociConfig, cfgDigest, 6),
		"layers":        []any{desc(ociLayer, layerDigest, 5)},
	}
	for k, v := range extra {
		fields[k] = v
	}
	return doc(t, fields)
}

func TestParseManifestFormats(t *testing.T) {
	dockerManifest := doc(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeDockerManifest,
		"config":        desc(dockerConfig, cfgDigest, 6),
		"layers": []any{
			desc(dockerLayer, layerDigest, 5),
			map[string]any{"mediaType": dockerForeign, "digest": string(childA), "size": 7, "urls": []string{"https://example.com/l"}},
		},
	})
	tests := []struct {
		name         string
		contentType  string
		payload      []byte
		mediaType    string
		artifactType string
		subject      oci.Digest
		refs         []oci.Ref
	}{
		{
			name:         "oci manifest",
			contentType:  oci.MediaTypeImageManifest,
			payload:      imageManifest(t, oci.MediaTypeImageManifest, map[string]any{"subject": desc(oci.MediaTypeImageManifest, subjDigest, 10)}),
			mediaType:    oci.MediaTypeImageManifest,
			artifactType: ociConfig,
			subject:      subjDigest,
			refs: []oci.Ref{
				{Kind: oci.KindConfig, Descriptor: oci.Descriptor{MediaType: ociConfig, Digest: cfgDigest, Size: 6}},
				{Kind: oci.KindLayer, Descriptor: oci.Descriptor{MediaType: ociLayer, Digest: layerDigest, Size: 5}},
			},
		},
		{
			name:         "oci artifact with artifactType",
			contentType:  oci.MediaTypeImageManifest,
			payload:      imageManifest(t, "", map[string]any{"artifactType": sbomType, "config": desc(oci.MediaTypeEmptyJSON, cfgDigest, 2), "layers": []any{}}),
			mediaType:    oci.MediaTypeImageManifest,
			artifactType: sbomType,
			refs:         []oci.Ref{{Kind: oci.KindConfig, Descriptor: oci.Descriptor{MediaType: oci.MediaTypeEmptyJSON, Digest: cfgDigest, Size: 2}}},
		},
		{
			name:         "oci manifest, type from payload only",
			payload:      imageManifest(t, oci.MediaTypeImageManifest, nil),
			mediaType:    oci.MediaTypeImageManifest,
			artifactType: ociConfig,
			refs: []oci.Ref{
				{Kind: oci.KindConfig, Descriptor: oci.Descriptor{MediaType: ociConfig, Digest: cfgDigest, Size: 6}},
				{Kind: oci.KindLayer, Descriptor: oci.Descriptor{MediaType: ociLayer, Digest: layerDigest, Size: 5}},
			},
		},
		{
			name:        "oci index",
			contentType: oci.MediaTypeImageIndex + "; charset=utf-8",
			payload: doc(t, map[string]any{
				"schemaVersion": 2,
				"mediaType":     oci.MediaTypeImageIndex,
				"artifactType":  sbomType,
				"manifests":     []any{desc(oci.MediaTypeImageManifest, childA, 100), desc(oci.MediaTypeImageManifest, childB, 200)},
				"subject":       desc(oci.MediaTypeImageIndex, subjDigest, 10),
			}),
			mediaType:    oci.MediaTypeImageIndex,
			artifactType: sbomType,
			subject:      subjDigest,
			refs: []oci.Ref{
				{Kind: oci.KindManifest, Descriptor: oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: childA, Size: 100}},
				{Kind: oci.KindManifest, Descriptor: oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: childB, Size: 200}},
			},
		},
		{
			name:         "docker schema2 with a foreign layer",
			contentType:  oci.MediaTypeDockerManifest,
			payload:      dockerManifest,
			mediaType:    oci.MediaTypeDockerManifest,
			artifactType: dockerConfig,
			refs: []oci.Ref{
				{Kind: oci.KindConfig, Descriptor: oci.Descriptor{MediaType: dockerConfig, Digest: cfgDigest, Size: 6}},
				{Kind: oci.KindLayer, Descriptor: oci.Descriptor{MediaType: dockerLayer, Digest: layerDigest, Size: 5}},
				{Kind: oci.KindLayer, Foreign: true, Descriptor: oci.Descriptor{MediaType: dockerForeign, Digest: childA, Size: 7, URLs: []string{"https://example.com/l"}}},
			},
		},
		{
			name:        "docker manifest list",
			contentType: oci.MediaTypeDockerManifestList,
			payload: doc(t, map[string]any{
				"schemaVersion": 2,
				"mediaType":     oci.MediaTypeDockerManifestList,
				"manifests":     []any{desc(oci.MediaTypeDockerManifest, childA, 100)},
			}),
			mediaType: oci.MediaTypeDockerManifestList,
			refs:      []oci.Ref{{Kind: oci.KindManifest, Descriptor: oci.Descriptor{MediaType: oci.MediaTypeDockerManifest, Digest: childA, Size: 100}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := oci.ParseManifest(tt.contentType, tt.payload)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if m.MediaType != tt.mediaType {
				t.Errorf("MediaType = %q, want %q", m.MediaType, tt.mediaType)
			}
			if m.IsIndex() != (tt.mediaType == oci.MediaTypeImageIndex || tt.mediaType == oci.MediaTypeDockerManifestList) {
				t.Errorf("IsIndex() = %v", m.IsIndex())
			}
			if m.ArtifactType != tt.artifactType {
				t.Errorf("ArtifactType = %q, want %q", m.ArtifactType, tt.artifactType)
			}
			switch {
			case tt.subject == "" && m.Subject != nil:
				t.Errorf("Subject = %+v, want none", m.Subject)
			case tt.subject != "" && (m.Subject == nil || m.Subject.Digest != tt.subject):
				t.Errorf("Subject = %+v, want digest %s", m.Subject, tt.subject)
			}
			if m.IsIndex() != (m.Config == nil) {
				t.Errorf("Config = %+v for media type %s", m.Config, m.MediaType)
			}
			got, _ := json.Marshal(m.Refs)
			want, _ := json.Marshal(tt.refs)
			if string(got) != string(want) {
				t.Errorf("Refs =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestParseManifestRejects(t *testing.T) {
	tooBig := imageManifest(t, oci.MediaTypeImageManifest, map[string]any{
		"annotations": map[string]string{"pad": strings.Repeat("x", oci.MaxManifestSize)},
	})
	tests := []struct {
		name        string
		contentType string
		payload     []byte
	}{
		{"content type and mediaType differ", oci.MediaTypeDockerManifest, imageManifest(t, oci.MediaTypeImageManifest, nil)},
		{"index content type, manifest payload", oci.MediaTypeImageIndex, imageManifest(t, oci.MediaTypeImageManifest, nil)},
		{"unknown content type", "application/json", imageManifest(t, "", nil)},
		{"unknown payload media type", "", imageManifest(t, "application/vnd.example+json", nil)},
		{"docker schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws", imageManifest(t, "", nil)},
		{"no media type anywhere", "", imageManifest(t, "", nil)},
		{"malformed content type", "application/vnd.oci.image.manifest.v1+json; =", imageManifest(t, "", nil)},
		{"schemaVersion missing", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"schemaVersion": nil})},
		{"schemaVersion 1", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"schemaVersion": 1})},
		{"schemaVersion as text", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"schemaVersion": "2"})},
		{"malformed JSON", oci.MediaTypeImageManifest, []byte(`{"schemaVersion": 2,`)},
		{"not an object", oci.MediaTypeImageManifest, []byte(`[2]`)},
		{"empty payload", oci.MediaTypeImageManifest, nil},
		{"trailing document", oci.MediaTypeImageManifest, append(imageManifest(t, "", nil), []byte(` {}`)...)},
		{"trailing garbage", oci.MediaTypeImageManifest, append(imageManifest(t, "", nil), 'x')},
		{"trailing brace", oci.MediaTypeImageManifest, append(imageManifest(t, "", nil), '}')},
		{"trailing bracket", oci.MediaTypeImageManifest, append(imageManifest(t, "", nil), ']')},
		{"index with layers", oci.MediaTypeImageIndex, doc(t, map[string]any{
			"schemaVersion": 2, "manifests": []any{}, "layers": []any{desc(ociLayer, layerDigest, 5)}})},
		{"index with config", oci.MediaTypeImageIndex, doc(t, map[string]any{
			"schemaVersion": 2, "manifests": []any{}, "config": desc(ociConfig, cfgDigest, 6)})},
		{"manifest with manifests", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"manifests": []any{}})},
		{"manifest without config", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"config": nil})},
		{"negative layer size", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"layers": []any{desc(ociLayer, layerDigest, -1)}})},
		{"negative config size", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"config": desc(ociConfig, cfgDigest, -6)})},
		{"bad layer digest", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"layers": []any{desc(ociLayer, "sha256:abc", 5)}})},
		{"md5 layer digest", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"layers": []any{desc(ociLayer, "md5:d41d8cd98f00b204e9800998ecf8427e", 5)}})},
		{"missing layer digest", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"layers": []any{map[string]any{"mediaType": ociLayer, "size": 5}}})},
		{"bad config digest", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"config": desc(ociConfig, oci.Digest("sha256:"+strings.ToUpper(hex64)), 6)})},
		{"bad layer media type", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"layers": []any{desc("not a media type", layerDigest, 5)}})},
		{"bad child digest", oci.MediaTypeImageIndex, doc(t, map[string]any{
			"schemaVersion": 2, "manifests": []any{desc(oci.MediaTypeImageManifest, "sha256:", 1)}})},
		{"bad subject digest", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"subject": desc(oci.MediaTypeImageManifest, "nope", 1)})},
		{"negative subject size", oci.MediaTypeImageManifest, imageManifest(t, "", map[string]any{"subject": desc(oci.MediaTypeImageManifest, subjDigest, -1)})},
		{"over 4 MiB", oci.MediaTypeImageManifest, tooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := oci.ParseManifest(tt.contentType, tt.payload)
			if !errors.Is(err, oci.ErrManifestInvalid) {
				t.Fatalf("ParseManifest error = %v, want ErrManifestInvalid", err)
			}
			if m != nil {
				t.Errorf("ParseManifest returned a manifest with an error: %+v", m)
			}
		})
	}
}

func TestParseManifestSizeLimit(t *testing.T) {
	base := imageManifest(t, oci.MediaTypeImageManifest, nil)
	// Pad with trailing whitespace, which JSON allows, to exactly the limit.
	atLimit := append(append([]byte{}, base...), []byte(strings.Repeat(" ", oci.MaxManifestSize-len(base)))...)
	if _, err := oci.ParseManifest("", atLimit); err != nil {
		t.Errorf("manifest of exactly %d bytes: %v", oci.MaxManifestSize, err)
	}
	if _, err := oci.ParseManifest("", append(atLimit, ' ')); !errors.Is(err, oci.ErrManifestInvalid) {
		t.Errorf("manifest of %d bytes: %v, want ErrManifestInvalid", oci.MaxManifestSize+1, err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(oci.MediaTypeImageManifest, imageManifest(f, oci.MediaTypeImageManifest, nil))
	f.Add("", imageManifest(f, oci.MediaTypeImageManifest, map[string]any{"subject": desc(oci.MediaTypeImageManifest, subjDigest, 1)}))
	f.Add(oci.MediaTypeImageIndex, doc(f, map[string]any{"schemaVersion": 2, "manifests": []any{desc(oci.MediaTypeImageManifest, childA, 3)}}))
	f.Add(oci.MediaTypeDockerManifest, imageManifest(f, "", map[string]any{"layers": []any{map[string]any{"digest": string(layerDigest), "size": 1, "urls": []string{"u"}}}}))
	f.Add(oci.MediaTypeDockerManifestList, []byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:x","size":-1}]}`))
	f.Add("", []byte(`{"schemaVersion":2}}`))
	f.Fuzz(func(t *testing.T, contentType string, payload []byte) {
		m, err := oci.ParseManifest(contentType, payload)
		if err != nil {
			if !errors.Is(err, oci.ErrManifestInvalid) {
				t.Fatalf("error %v does not wrap ErrManifestInvalid", err)
			}
			return
		}
		if !json.Valid(payload) {
			t.Fatalf("accepted invalid JSON %q", payload)
		}
		switch m.MediaType {
		case oci.MediaTypeImageManifest, oci.MediaTypeImageIndex, oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList:
		default:
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		if !m.IsIndex() && (m.Config == nil || len(m.Refs) == 0 || m.Refs[0].Kind != oci.KindConfig) {
			t.Fatalf("image manifest without a config ref: %+v", m)
		}
		for i, r := range m.Refs {
			if _, err := oci.ParseDigest(string(r.Digest)); err != nil {
				t.Fatalf("Refs[%d] digest %q is invalid", i, r.Digest)
			}
			if r.Size < 0 {
				t.Fatalf("Refs[%d] size %d is negative", i, r.Size)
			}
			if m.IsIndex() != (r.Kind == oci.KindManifest) {
				t.Fatalf("Refs[%d] kind %s in a %s", i, r.Kind, m.MediaType)
			}
		}
		if m.Subject != nil {
			if _, err := oci.ParseDigest(string(m.Subject.Digest)); err != nil || m.Subject.Size < 0 {
				t.Fatalf("subject %+v is invalid", m.Subject)
			}
		}
	})
}
