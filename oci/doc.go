// Package oci is Berth's shared vocabulary: digests, descriptors, media types,
// the naming rules for repositories, tags and references, and the parsing of
// manifests into the descriptors they reference. It knows nothing of HTTP or
// storage; every other package speaks about content in these terms.
package oci
