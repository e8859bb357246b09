package auth

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// htpasswdLine is user's line of an htpasswd file, hashed at bcrypt's
// lowest cost to keep the tests fast.
func htpasswdLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h)
}

// openHtpasswd writes lines to a file and opens it, looked at on every use.
func openHtpasswd(t *testing.T, onError func(error), lines ...string) (*Htpasswd, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	replaceFile(t, path, strings.Join(lines, "\n")+"\n")
	h, err := OpenHtpasswd(path, onError)
	if err != nil {
		t.Fatal(err)
	}
	h.file.recheck = 0
	return h, path
}

func TestHtpasswdVerify(t *testing.T) {
	// htpasswd -B writes $2y$, which is $2a$ under another name.
	bob := strings.Replace(htpasswdLine(t, "bob", "hunter2"), "$2a$", "$2y$", 1)
	h, _ := openHtpasswd(t, nil,
		"# the team",
		htpasswdLine(t, "alice", "correct horse"),
		"",
		bob+"\r", // a CRLF file
	)
	for _, c := range []struct {
		name, user, password string
		want                 bool
	}{
		{"bcrypt", "alice", "correct horse", true},
		{"$2y$ of htpasswd -B", "bob", "hunter2", true},
		{"wrong password", "alice", "correct horse battery", false},
		{"another user's password", "alice", "hunter2", false},
		{"empty password", "alice", "", false},
		{"unknown user", "carol", "correct horse", false},
		{"user name's case", "Alice", "correct horse", false},
		{"the comment is no user", "# the team", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := h.Verify(c.user, c.password); got != c.want {
				t.Errorf("Verify(%q, %q) = %v, want %v", c.user, c.password, got, c.want)
			}
		})
	}
	if _, bob := h.hashOf("bob"); !bob {
		t.Error("bob has no hash")
	}
	if _, carol := h.hashOf("carol"); carol {
		t.Error("carol, who is not in the file, has a hash")
	}
}

// TestHtpasswdDummy checks that an unknown user is compared against the
// costliest hash, wherever its line, so that no known user's check is
// slower than an unknown name's.
func TestHtpasswdDummy(t *testing.T) {
	var lines []string
	for i, cost := range []int{4, 6, 5} {
		hash, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("user%d:%s", i, hash))
	}
	u, err := parseHtpasswd([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost(u.dummy); !bytes.Equal(u.dummy, u.hashes["user1"]) {
		t.Errorf("the dummy hash has cost %d, want user1's, of cost 6", cost)
	}
}

func TestHtpasswdRefused(t *testing.T) {
	good := htpasswdLine(t, "alice", "secret")
	_, hash, _ := strings.Cut(good, ":")
	for _, c := range []struct{ name, line string }{
		{"MD5 (apr1)", "alice:$apr1$0Fq6Hmp.$5w2v1ZkYv8ZbZ4Yt1yJtq/"},
		{"SHA-1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="},
		{"crypt", "alice:abJnggxhB/yWI"},
		{"plain text", "alice:secret"},
		{"bcrypt's shape, another version", "alice:$1$" + hash[4:]},
		{"bcrypt with bytes after it", good + ":comment"},
		{"bcrypt, cost out of range", "alice:" + hash[:4] + "99" + hash[6:]},
		{"no hash", "alice"},
		{"no user", ":" + hash},
		{"a user twice", good + "\n" + htpasswdLine(t, "alice", "other")},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "htpasswd")
			replaceFile(t, path, "# users\n"+c.line+"\n")
			_, err := OpenHtpasswd(path, nil)
			if err == nil {
				t.Fatalf("OpenHtpasswd accepted %q", c.line)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q does not name the line", err)
			}
		})
	}
}

func TestHtpasswdReload(t *testing.T) {
	var errs errorCount
	h, path := openHtpasswd(t, errs.onError, htpasswdLine(t, "alice", "a1"))
	check := func(t *testing.T, user, password string, want bool) {
		t.Helper()
		if got := h.Verify(user, password); got != want {
			t.Errorf("Verify(%q, %q) = %v, want %v", user, password, got, want)
		}
	}
	check(t, "alice", "a1", true)

	replaceFile(t, path, htpasswdLine(t, "bob", "b1")+"\n")
	t.Run("users changed", func(t *testing.T) {
		check(t, "bob", "b1", true)
		check(t, "alice", "a1", false)
		if _, ok := h.hashOf("alice"); ok {
			t.Error("a removed user still exists")
		}
	})

	replaceFile(t, path, htpasswdLine(t, "bob", "b2")+"\nmallory:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
	t.Run("broken edit keeps the previous users", func(t *testing.T) {
		check(t, "bob", "b1", true)
		check(t, "bob", "b2", false)
		check(t, "mallory", "password", false)
		if errs.n != 1 {
			t.Errorf("the broken edit was reported %d times, want once", errs.n)
		}
	})

	replaceFile(t, path, htpasswdLine(t, "bob", "b2")+"\n")
	t.Run("mended", func(t *testing.T) {
		check(t, "bob", "b2", true)
		check(t, "bob", "b1", false)
	})
}

func TestHashPassword(t *testing.T) {
	line, err := HashPassword("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := openHtpasswd(t, nil, line)
	if !h.Verify("alice", "s3cret") {
		t.Errorf("the line HashPassword wrote (%q) does not verify", line)
	}
	for _, user := range []string{"", "a:b", "a\nb"} {
		if _, err := HashPassword(user, "x"); err == nil {
			t.Errorf("HashPassword(%q) accepted the name", user)
		}
	}
}

// BenchmarkHtpasswdVerify: a client's repeated requests with the same
// credentials (remembered) against a check that cannot be (a wrong
// password), at the cost htpasswd -B uses.
func BenchmarkHtpasswdVerify(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), 5)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "htpasswd")
	replaceFile(b, path, "alice:"+string(hash)+"\n")
	h, err := OpenHtpasswd(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, password string }{{"remembered", "pw"}, {"wrong", "nope"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				h.Verify("alice", c.password)
			}
		})
	}
}
