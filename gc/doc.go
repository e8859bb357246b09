// Package gc reclaims space the registry no longer needs, online, beside
// pushes and pulls. It forgets in metadata first and deletes bytes second,
// so a crash in between leaves orphan bytes (reclaimed later), never a
// record of content that is gone.
package gc
