package auth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd is an htpasswd file of bcrypt hashes (htpasswd -B), read again
// when it changes.
type Htpasswd struct {
	file *watched[*htpasswdUsers]

	// verified remembers recent successful checks, since bcrypt is meant
	// to be slow and a client sends its credentials with every request.
	// The key is an HMAC, under a key of this process, of the user, the
	// password and the hash it matched: a changed hash misses, and memory
	// holds nothing faster to guess from than the bcrypt hash itself.
	// Failures are never remembered, so guessing stays as slow as bcrypt.
	mu       sync.Mutex
	macKey   []byte
	verified map[[sha256.Size]byte]time.Time
}

const (
	// verifiedFor is how long a successful check is remembered.
	verifiedFor = time.Minute
	// maxVerified bounds the memory of successful checks.
	maxVerified = 4096
)

// htpasswdUsers is an htpasswd file read.
type htpasswdUsers struct {
	hashes map[string][]byte
	// dummy is the file's costliest hash, compared against for unknown
	// users so that a wrong user name takes as long as a wrong password
	// (htpasswd -B hashes at cost 5, bcrypt.DefaultCost is 10): a cheaper
	// one would tell the costlier users' names apart by their slowness.
	dummy []byte
}

// bcryptHash is the form of a bcrypt hash: bcrypt.Cost alone accepts
// other versions ("$1$05$…") and trailing bytes, which no password matches.
var bcryptHash = regexp.MustCompile(`^\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// OpenHtpasswd reads path. A line whose hash is not bcrypt is an error:
// MD5, SHA-1 and crypt hashes are too weak to accept. onError hears of a
// later change that does not parse; the previous users stay in force.
func OpenHtpasswd(path string, onError func(error)) (*Htpasswd, error) {
	f, err := watch(path, parseHtpasswd, onError)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &Htpasswd{file: f, macKey: key, verified: map[[sha256.Size]byte]time.Time{}}, nil
}

func parseHtpasswd(b []byte) (*htpasswdUsers, error) {
	u := &htpasswdUsers{hashes: map[string][]byte{}}
	dummyCost := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: not user:hash", n)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil || !bcryptHash.MatchString(hash) {
			return nil, fmt.Errorf("line %d: user %s: only bcrypt hashes are accepted (htpasswd -B)", n, user)
		}
		// Apache takes the first line of a user, a last-wins map the last:
		// a user twice is a mistake to show, not to settle silently.
		if _, ok := u.hashes[user]; ok {
			return nil, fmt.Errorf("line %d: user %s again", n, user)
		}
		u.hashes[user] = []byte(hash)
		if cost > dummyCost {
			u.dummy, dummyCost = u.hashes[user], cost
		}
	}
	return u, sc.Err()
}

// Verify reports whether password is user's.
func (h *Htpasswd) Verify(user, password string) bool {
	u := h.file.get()
	hash, ok := u.hashes[user]
	if !ok {
		if u.dummy != nil {
			bcrypt.CompareHashAndPassword(u.dummy, []byte(password))
		}
		return false
	}
	mac := hmac.New(sha256.New, h.macKey)
	for _, part := range []string{user, password, string(hash)} {
		mac.Write([]byte(part))
		mac.Write([]byte{0})
	}
	var k [sha256.Size]byte
	mac.Sum(k[:0])
	now := time.Now()
	h.mu.Lock()
	at, ok := h.verified[k]
	h.mu.Unlock()
	if ok && now.Sub(at) < verifiedFor {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	if len(h.verified) >= maxVerified {
		clear(h.verified)
	}
	h.verified[k] = now
	h.mu.Unlock()
	return true
}

// hashOf returns user's hash, if the file still names user.
func (h *Htpasswd) hashOf(user string) ([]byte, bool) {
	hash, ok := h.file.get().hashes[user]
	return hash, ok
}

// HashPassword returns an htpasswd line for user.
func HashPassword(user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\n") {
		return "", fmt.Errorf("%q cannot be an htpasswd user name", user)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return user + ":" + string(hash), nil
}
