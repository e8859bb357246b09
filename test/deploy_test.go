package test

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const composeFile = "../deploy/compose/compose.yaml"

// compose is the part of the Compose specification deploy/compose/compose.yaml uses. It decodes
// strictly: a key not declared here fails the test, so a misspelt one cannot pass unnoticed
// where no compose command is installed to check the file.
type compose struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]*struct{}      `yaml:"volumes"`
}

// composeService is a service of compose.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
		Start    string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Restart         string `yaml:"restart"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func readCompose(t *testing.T) compose {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, composeFile)))
	dec.KnownFields(true)
	var c compose
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return c
}

// TestContainerCompose checks deploy/compose/compose.yaml: Berth on S3 and PostgreSQL, started once
// both answer and the bucket exists, configured by BERTH_* variables with the secrets required
// from the environment; and, with docker compose or docker-compose, that Compose accepts it.
func TestContainerCompose(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	for _, name := range []string{"berth", "postgres", "s3", "create-bucket"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("%s has no service %s", composeFile, name)
		}
	}
	berth := c.Services["berth"]
	if b := berth.Build; b == nil {
		t.Error("berth: no build")
	} else if _, err := os.Stat(filepath.Join(filepath.Dir(composeFile), b.Context, b.Dockerfile)); err != nil {
		t.Errorf("berth: build: %v", err)
	}
	env := berth.Environment
	if env["BERTH_STORAGE_DRIVER"] != "s3" || env["BERTH_STORAGE_S3_PATH_STYLE"] != "true" {
		t.Errorf("berth: storage %q, path-style %q: want s3, path-style", env["BERTH_STORAGE_DRIVER"], env["BERTH_STORAGE_S3_PATH_STYLE"])
	}
	if u, err := url.Parse(env["BERTH_STORAGE_S3_ENDPOINT"]); err != nil || u.Port() != "7070" || c.Services[u.Hostname()].Image == "" {
		t.Errorf("berth: S3 endpoint %q: want the service s3 on its port 7070", env["BERTH_STORAGE_S3_ENDPOINT"])
	}
	if !strings.HasPrefix(env["BERTH_DATABASE"], "postgres://berth:${POSTGRES_PASSWORD:?") || !strings.Contains(env["BERTH_DATABASE"], "@postgres:5432/berth?") {
		t.Errorf("berth: database %q: want the service postgres, its password required", env["BERTH_DATABASE"])
	}
	if !strings.HasPrefix(env["BERTH_STORAGE_S3_SECRET_KEY"], "${S3_SECRET_KEY:?") {
		t.Errorf("berth: S3 secret key %q: want it required from the environment", env["BERTH_STORAGE_S3_SECRET_KEY"])
	}
	if berth.DependsOn["postgres"].Condition != "service_healthy" || berth.DependsOn["create-bucket"].Condition != "service_completed_successfully" {
		t.Errorf("berth: depends_on %+v: want postgres healthy and the bucket made", berth.DependsOn)
	}
	if !berth.ReadOnly || !slices.Equal(berth.CapDrop, []string{"ALL"}) {
		t.Errorf("berth: read_only %v, cap_drop %v: want a read-only root without capabilities", berth.ReadOnly, berth.CapDrop)
	}
	for name, svc := range c.Services {
		if (name == "postgres" || name == "s3" || name == "berth") && (svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 || svc.Healthcheck.Test[0] != "CMD") {
			t.Errorf("%s: healthcheck %+v: want a command", name, svc.Healthcheck)
		}
		for _, v := range svc.Volumes {
			if src, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared", name, src)
				}
			}
		}
	}

	docker, args := composeCommand(t)
	if docker == "" {
		t.Log("neither docker compose nor docker-compose is installed: the file was decoded, not checked by Compose")
		return
	}
	args = append(args, "--file", composeFile, "config", "--quiet")
	ok := tool{path: docker, env: []string{"POSTGRES_PASSWORD=secret", "S3_SECRET_KEY=secret"}}
	ok.run(t, args...)
	missing := tool{path: docker, env: []string{"POSTGRES_PASSWORD=", "S3_SECRET_KEY="}}
	if out, errOut, err := missing.exec(args...); err == nil || !bytes.Contains(errOut, []byte("set ")) {
		t.Errorf("compose config without the secrets: err %v, want them required:\n%s%s", err, out, errOut)
	}
}

// composeCommand returns Compose's command and its first arguments: docker compose (v2), or
// docker-compose; an empty path when neither is installed.
func composeCommand(t *testing.T) (string, []string) {
	if docker, err := exec.LookPath("docker"); err == nil {
		if _, _, err := (tool{path: docker}).exec("compose", "version"); err == nil {
			return docker, []string{"compose"}
		}
	}
	if dc, err := exec.LookPath("docker-compose"); err == nil {
		return dc, nil
	}
	return "", nil
}

// TestContainerDeployOptions: every BERTH_* variable in deploy/compose and deploy/kubernetes, and
// every key of the berth.yaml files of deploy/kubernetes, is an option of berth serve. Berth
// ignores variables it does not know, so a misspelt one would be lost without a word.
func TestContainerDeployOptions(t *testing.T) {
	t.Parallel()
	stdout, stderr, _ := tool{path: berthBin(t)}.exec("serve", "--help") // the usage, on stderr
	out := append(stdout, stderr...)
	options := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(string(out), -1) {
		options[m[1]] = true
	}
	if !options["addr"] || !options["storage.s3.bucket"] {
		t.Fatalf("berth serve --help lists no options:\n%s", out)
	}
	envs := map[string]bool{}
	for o := range options {
		envs["BERTH_"+strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(o))] = true
	}

	for name := range readCompose(t).Services["berth"].Environment {
		if !envs[name] {
			t.Errorf("%s: %s is not an option of berth serve", composeFile, name)
		}
	}
	var configs []string
	err := filepath.WalkDir("../deploy/kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		b := readFile(t, path)
		for _, m := range regexp.MustCompile(`name: (BERTH_\w+)`).FindAllSubmatch(b, -1) {
			if !envs[string(m[1])] {
				t.Errorf("%s: %s is not an option of berth serve", path, m[1])
			}
		}
		if d.Name() == "berth.yaml" {
			configs = append(configs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(configs) < 2 {
		t.Fatalf("berth.yaml files in deploy/kubernetes: %v, want the base's and ha's", configs)
	}
	for _, path := range configs {
		var doc map[string]any
		if err := yaml.Unmarshal(readFile(t, path), &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, key := range flattenKeys("", doc) {
			if !options[key] {
				t.Errorf("%s: %s is not an option of berth serve", path, key)
			}
		}
	}
}

// flattenKeys returns the dotted names of a YAML document's leaves, as berth reads its file
// (policies and webhooks.endpoints, lists of their own, are left out).
func flattenKeys(prefix string, doc map[string]any) []string {
	var keys []string
	for k, v := range doc {
		name := prefix + k
		if name == "policies" || name == "webhooks.endpoints" {
			continue
		}
		if m, ok := v.(map[string]any); ok {
			keys = append(keys, flattenKeys(name+".", m)...)
		} else {
			keys = append(keys, name)
		}
	}
	return keys
}
