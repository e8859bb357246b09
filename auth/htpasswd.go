package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd is an htpasswd file of bcrypt hashes (htpasswd -B), read again
// when it changes.
type Htpasswd struct {
	file *watched[map[string][]byte]
}

// OpenHtpasswd reads path. A line whose hash is not bcrypt is an error:
// MD5, SHA-1 and crypt hashes are too weak to accept. onError hears of a
// later change that does not parse; the previous users stay in force.
func OpenHtpasswd(path string, onError func(error)) (*Htpasswd, error) {
	f, err := watch(path, parseHtpasswd, onError)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	return &Htpasswd{file: f}, nil
}

func parseHtpasswd(b []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
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
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %s: only bcrypt hashes are accepted (htpasswd -B)", n, user)
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// dummyHash is compared against for unknown users, so that a wrong user
// name takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("berth"), bcrypt.DefaultCost)
	return h
})

// Verify reports whether password is user's.
func (h *Htpasswd) Verify(user, password string) bool {
	hash, ok := h.file.get()[user]
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// Exists reports whether the file still names user; a refresh token of a
// removed user is refused.
func (h *Htpasswd) Exists(user string) bool {
	_, ok := h.file.get()[user]
	return ok
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
