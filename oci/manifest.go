package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifests Berth stores.
const (
	MediaTypeImageManifest      = v1.MediaTypeImageManifest
	MediaTypeImageIndex         = v1.MediaTypeImageIndex
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeEmptyJSON          = v1.MediaTypeEmptyJSON
)

// MaxManifestSize is the largest manifest Berth accepts (4 MiB), the limit the
// distribution spec recommends registries support.
const MaxManifestSize = 4 << 20

// Descriptor points at content: media type, digest, size and annotations.
type Descriptor = v1.Descriptor

// ErrManifestInvalid reports a manifest Berth cannot accept; errors wrapping it
// explain why.
var ErrManifestInvalid = errors.New("invalid manifest")

// Kind says how a manifest refers to content; garbage collection walks them all.
type Kind string

// The kinds of reference a manifest makes.
const (
	KindConfig   Kind = "config"
	KindLayer    Kind = "layer"
	KindManifest Kind = "manifest"
)

// Ref is one piece of content a manifest needs.
type Ref struct {
	Kind Kind
	Descriptor
	// Foreign layers live outside any registry (their descriptor carries URLs),
	// so their presence is not required.
	Foreign bool
}

// Manifest is what Berth needs to know of a manifest: its type, what it
// references, and what it is about.
type Manifest struct {
	MediaType string
	// ArtifactType is the manifest's artifactType, or for an image manifest
	// without one the config's media type, as the referrers API reports it.
	ArtifactType string
	Config       *Descriptor
	Subject      *Descriptor
	Refs         []Ref
	Annotations  map[string]string
}

// IsIndex reports whether the manifest lists other manifests.
func (m *Manifest) IsIndex() bool {
	return m.MediaType == MediaTypeImageIndex || m.MediaType == MediaTypeDockerManifestList
}

// wire covers the fields of all four supported formats; they share names.
type wire struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// ParseManifest reads payload as a manifest of the given media type (the
// request's Content-Type). An empty contentType defers to the payload's own
// mediaType field; when both are present they must agree.
func ParseManifest(contentType string, payload []byte) (*Manifest, error) {
	if len(payload) > MaxManifestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrManifestInvalid, MaxManifestSize)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	// More() misses a stray '}' or ']'; anything but EOF after the document is trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON document", ErrManifestInvalid)
	}
	mt, err := manifestMediaType(contentType, w.MediaType)
	if err != nil {
		return nil, err
	}
	if w.SchemaVersion == nil || *w.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion must be 2", ErrManifestInvalid)
	}
	m := &Manifest{MediaType: mt, ArtifactType: w.ArtifactType, Annotations: w.Annotations}
	if w.Subject != nil {
		if err := checkDescriptor("subject", *w.Subject); err != nil {
			return nil, err
		}
		m.Subject = w.Subject
	}
	if m.IsIndex() {
		if w.Config != nil || w.Layers != nil {
			return nil, fmt.Errorf("%w: an index has no config or layers", ErrManifestInvalid)
		}
		for i, d := range w.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return nil, err
			}
			m.Refs = append(m.Refs, Ref{Kind: KindManifest, Descriptor: d})
		}
		return m, nil
	}
	if w.Manifests != nil {
		return nil, fmt.Errorf("%w: an image manifest has no manifests list", ErrManifestInvalid)
	}
	if w.Config == nil {
		return nil, fmt.Errorf("%w: config is required", ErrManifestInvalid)
	}
	if err := checkDescriptor("config", *w.Config); err != nil {
		return nil, err
	}
	m.Config = w.Config
	if m.ArtifactType == "" {
		m.ArtifactType = w.Config.MediaType
	}
	m.Refs = append(m.Refs, Ref{Kind: KindConfig, Descriptor: *w.Config})
	for i, d := range w.Layers {
		if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), d); err != nil {
			return nil, err
		}
		m.Refs = append(m.Refs, Ref{Kind: KindLayer, Descriptor: d, Foreign: len(d.URLs) > 0})
	}
	return m, nil
}

// manifestMediaType settles the media type from the request and the payload.
func manifestMediaType(contentType, inPayload string) (string, error) {
	declared := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("%w: Content-Type %q: %v", ErrManifestInvalid, contentType, err)
		}
		declared = mt
	}
	switch {
	case declared == "":
		declared = inPayload
	case inPayload != "" && inPayload != declared:
		return "", fmt.Errorf("%w: Content-Type %q does not match mediaType %q", ErrManifestInvalid, declared, inPayload)
	}
	switch declared {
	case MediaTypeImageManifest, MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return declared, nil
	case "":
		return "", fmt.Errorf("%w: no media type in Content-Type or payload", ErrManifestInvalid)
	}
	return "", fmt.Errorf("%w: unsupported media type %q", ErrManifestInvalid, declared)
}

func checkDescriptor(field string, d Descriptor) error {
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("%w: %s: digest %q is invalid", ErrManifestInvalid, field, d.Digest)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s: negative size", ErrManifestInvalid, field)
	}
	if d.MediaType != "" {
		if _, _, err := mime.ParseMediaType(d.MediaType); err != nil {
			return fmt.Errorf("%w: %s: media type %q: %v", ErrManifestInvalid, field, d.MediaType, err)
		}
	}
	return nil
}
