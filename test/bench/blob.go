package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
)

// pattern is a buffer of random bytes, generated once, from which every test blob is read.
// Producing a blob costs a memcpy instead of a random generator, so the client stays cheap
// on a small machine shared with the server under test.
type pattern struct {
	buf   []byte
	nonce uint64 // distinguishes the blobs of one run from those of any other run
}

// newPattern fills size bytes from a ChaCha8 stream with the given seed.
func newPattern(size int, seed [32]byte) *pattern {
	p := &pattern{buf: make([]byte, size), nonce: binary.LittleEndian.Uint64(seed[:8])}
	_, _ = rand.NewChaCha8(seed).Read(p.buf) // ChaCha8.Read never fails
	return p
}

// blob is one deterministic byte string: a 16-byte header (run nonce, id) followed by the
// pattern read cyclically from an offset that depends on id. Distinct ids give distinct digests.
type blob struct {
	p    *pattern
	id   uint64
	size int64
}

// reader returns a fresh reader over the blob's bytes.
func (b blob) reader() *blobReader {
	r := &blobReader{p: b.p.buf, size: b.size}
	binary.LittleEndian.PutUint64(r.head[:8], b.p.nonce)
	binary.LittleEndian.PutUint64(r.head[8:], b.id)
	r.start = int64((b.id * 0x9e3779b97f4a7c15) % uint64(len(b.p.buf)))
	return r
}

// digest hashes the blob; it costs one pass over its bytes.
func (b blob) digest() string {
	h := sha256.New()
	_, _ = b.reader().WriteTo(h) // a hash never fails to write
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// bytes returns the whole blob in memory, for small blobs.
func (b blob) bytes() []byte {
	var buf bytes.Buffer
	buf.Grow(int(b.size))
	_, _ = b.reader().WriteTo(&buf)
	return buf.Bytes()
}

// blobReader streams a blob. It implements io.WriterTo so that hashing copies nothing.
type blobReader struct {
	p     []byte
	head  [16]byte
	start int64
	off   int64
	size  int64
}

// next returns the longest contiguous run of bytes at the current offset.
func (r *blobReader) next() []byte {
	rest := r.size - r.off
	var s []byte
	if r.off < int64(len(r.head)) {
		s = r.head[r.off:]
	} else {
		s = r.p[(r.start+r.off)%int64(len(r.p)):]
	}
	if int64(len(s)) > rest {
		s = s[:rest]
	}
	return s
}

// Read implements io.Reader.
func (r *blobReader) Read(b []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && r.off < r.size {
		c := copy(b[n:], r.next())
		n += c
		r.off += int64(c)
	}
	return n, nil
}

// WriteTo implements io.WriterTo.
func (r *blobReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.off < r.size {
		n, err := w.Write(r.next())
		total += int64(n)
		r.off += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// digestBytes returns the sha256 digest of b.
func digestBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
