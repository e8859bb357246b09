package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/auth"
)

func TestAuthHtpasswd(t *testing.T) {
	for _, c := range []struct{ name, stdin, password string }{
		{"the first line", "s3cret\nnot this\n", "s3cret"},
		{"CRLF", "s3cret\r\n", "s3cret"},
		{"no newline, spaces and all", " two words ", " two words "},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // bcrypt is slow on purpose
			var out bytes.Buffer
			if err := authCommand([]string{"htpasswd", "alice"}, strings.NewReader(c.stdin), &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "htpasswd")
			if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			h, err := auth.OpenHtpasswd(path, nil)
			if err != nil {
				t.Fatalf("the line printed, %q: %v", out.String(), err)
			}
			if !h.Verify("alice", c.password) {
				t.Errorf("the line printed, %q, does not verify %q", out.String(), c.password)
			}
		})
	}
}

func TestAuthExamplePolicy(t *testing.T) {
	var out bytes.Buffer
	if err := authCommand([]string{"example-policy"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != auth.ExamplePolicy {
		t.Errorf("printed %q, want auth.ExamplePolicy", out.String())
	}
	if _, err := auth.ParsePolicy(out.Bytes()); err != nil {
		t.Errorf("the example does not parse: %v", err)
	}
}

func TestAuthErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		stdin string
		want  string // "usage", "help", or part of the error
	}{
		{"no command", nil, "", "usage"},
		{"unknown command", []string{"passwd"}, "", "usage"},
		{"no user", []string{"htpasswd"}, "pw\n", "usage"},
		{"two users", []string{"htpasswd", "alice", "bob"}, "pw\n", "usage"},
		{"a flag", []string{"htpasswd", "--cost", "12", "alice"}, "pw\n", "usage"},
		{"arguments to example-policy", []string{"example-policy", "x"}, "", "usage"},
		{"help", []string{"htpasswd", "--help"}, "", "help"},
		{"no password", []string{"htpasswd", "alice"}, "", "no password"},
		{"an empty first line", []string{"htpasswd", "alice"}, "\npw\n", "no password"},
		{"a user name with a colon", []string{"htpasswd", "a:b"}, "pw\n", "cannot be an htpasswd user name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := authCommand(c.args, strings.NewReader(c.stdin), &out, io.Discard)
			switch c.want {
			case "usage":
				if !isUsage(err) {
					t.Errorf("%v, want a usage error", err)
				}
			case "help":
				if !errors.Is(err, flag.ErrHelp) {
					t.Errorf("%v, want flag.ErrHelp", err)
				}
			default:
				if err == nil || isUsage(err) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%v, want an error with %q", err, c.want)
				}
			}
			if out.Len() > 0 {
				t.Errorf("printed %q", out.String())
			}
		})
	}
}

// TestReadmeExamplePolicy: the README shows the example policy exactly as
// berth auth example-policy prints it.
func TestReadmeExamplePolicy(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+auth.ExamplePolicy+"```\n") {
		t.Error("README.md does not show auth.ExamplePolicy verbatim in a yaml block; paste the output of berth auth example-policy")
	}
}
