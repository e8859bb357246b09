package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImportsPointDown keeps the package borders of docs/architecture.md:
// each package may import only the Berth packages below it.
func TestImportsPointDown(t *testing.T) {
	const mod = "github.com/berthhq/berth/"
	allowed := map[string][]string{
		"oci":                 {},
		"storage":             {"oci"},
		"storage/disk":        {"oci", "storage"},
		"storage/storagetest": {"oci", "storage"},
		"metadata":            {"oci"},
		"gc":                  {"oci", "storage", "metadata"},
		"auth":                {"oci"},
		"notify":              {"oci", "metadata"},
		"registry":            {"oci", "storage", "metadata", "gc", "auth", "notify"},
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			name, ours := strings.CutPrefix(dep, mod)
			if !ours || name == pkg || slices.Contains(ok, name) {
				continue
			}
			t.Errorf("%s imports %s, which it may not", pkg, name)
		}
	}
}
