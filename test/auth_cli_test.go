package test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestCLIWithCredentials: the admin commands send --user and --password
// (or BERTH_USER and BERTH_PASSWORD) as basic credentials, under token
// authentication too, and report a refusal as the server's code.
func TestCLIWithCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var htpasswd []byte
	for _, u := range []string{"root", "dev"} {
		h, err := bcrypt.GenerateFromPassword([]byte("pw-"+u), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd = append(htpasswd, u+":"+string(h)+"\n"...)
	}
	policy := "groups: {admins: [root]}\nrules:\n  - {groups: [admins], repositories: [\"*\"], actions: [pull, push, delete, admin]}\n" +
		"  - {users: [dev], repositories: [\"apps/*\"], actions: [pull, push]}\n"
	for name, content := range map[string][]byte{"htpasswd": htpasswd, "policy.yaml": []byte(policy)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startBerth(t, serverOptions{PublicURL: true, Flags: []string{"--auth.method", "token",
		"--auth.htpasswd", filepath.Join(dir, "htpasswd"), "--auth.policy", filepath.Join(dir, "policy.yaml")}})
	cli := berthCLI(t, s)

	expectExit(t, cli, 1, "UNAUTHORIZED", "gc", "--dry-run")
	expectExit(t, cli, 1, "UNAUTHORIZED", "gc", "--dry-run", "--user", "root", "--password", "wrong")
	expectExit(t, cli, 1, "DENIED", "gc", "--dry-run", "--user", "dev", "--password", "pw-dev")
	var report struct {
		DryRun bool `json:"dryRun"`
	}
	runJSON(t, cli, &report, "gc", "--dry-run", "--user", "root", "--password", "pw-root")
	if !report.DryRun {
		t.Errorf("berth gc --dry-run as root: %+v", report)
	}
	cli.env = append(cli.env, "BERTH_USER=root", "BERTH_PASSWORD=pw-root")
	cli.run(t, "repos")
}
