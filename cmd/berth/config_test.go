package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/registry"
	"github.com/berthhq/berth/storage/s3"
)

func ptr[T any](v T) *T { return &v }

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(file, []byte("addr: \":7000\"\ndata: /srv/berth\nlog:\n  level: warn\n  format: json\nuploads:\n  max-age: 2h\nstorage:\n  disk:\n    fsync: false\n"+
		"policies:\n  - repositories: team/*\n    ordering: [semver]\n    retention:\n      keepNewest: 5\n      keepYoungerThan: 720h\n"+
		"gc:\n  untagged: 720h\n"+
		"auth:\n  method: basic\n  htpasswd: /etc/berth/htpasswd\n  token:\n    expiry: 10m\nlimits:\n  rate: 50\n"+
		"webhooks:\n  max-age: 1h\n  endpoints:\n    - name: deploy\n      url: http://127.0.0.1:9000/hook\n      format: cloudevents\n      secrets: [s1, \"${BERTH_TEST_HOOK_SECRET}\"]\n      numberedOnly: true\n"), 0o644)
	t.Setenv("BERTH_LOG_LEVEL", "debug")
	t.Setenv("BERTH_UPLOADS_PURGE_INTERVAL", "1m")
	t.Setenv("BERTH_GC_GRACE", "30m")
	t.Setenv("BERTH_TEST_HOOK_SECRET", "from the environment")

	c, err := loadConfig("serve", []string{"--config", file, "--addr", "127.0.0.1:7001"})
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		Addr:                "127.0.0.1:7001", // flag beats file
		DataDir:             "/srv/berth",     // file beats default
		StorageDriver:       "disk",
		TagOrdering:         "integer,semver",
		S3:                  s3.Options{PartSize: 8 << 20, MaxAttempts: 5},
		DiskFsync:           false,                                   // nested keys and booleans from the file
		Database:            filepath.Join("/srv/berth", "berth.db"), // derived
		LogLevel:            "debug",                                 // environment beats file
		LogFormat:           "json",
		UploadMaxAge:        2 * time.Hour,
		UploadPurgeInterval: time.Minute,
		ShutdownTimeout:     30 * time.Second,
		PublicURL:           "http://127.0.0.1:7001", // from the address
		WebhookTimeout:      10 * time.Second,
		WebhookMaxAge:       time.Hour,
		WebhookPauseAfter:   10,
		WebhookPauseFor:     5 * time.Minute,
		WebhookConcurrency:  16,
		WebhookKeep:         7 * 24 * time.Hour,
		WebhookSchedule:     notify.DefaultSchedule(),
		Webhooks: []notify.Endpoint{{Name: "deploy", URL: "http://127.0.0.1:9000/hook", Format: notify.FormatCloudEvents,
			Secrets: []string{"s1", "from the environment"}, NumberedOnly: true}},
		RestoreWindow:     14 * 24 * time.Hour,
		RetentionInterval: 10 * time.Minute,
		GCInterval:        time.Hour,
		GCGrace:           30 * time.Minute,
		GCUntagged:        untagged(720 * time.Hour),
		GCLinkDeadline:    time.Minute,
		Auth: authConfig{Method: "basic", Htpasswd: "/etc/berth/htpasswd", Token: authTokenConfig{
			Service: "berth", Issuer: "berth", Expiry: 10 * time.Minute}}, // three levels deep
		Limits: limitsConfig{Rate: 50, Burst: 100, Uploads: 1000, FailedLogins: 10, BodyIdleTimeout: time.Minute, ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10},
		Policies: []registry.PolicyRule{{Repositories: "team/*", Policy: registry.Policy{
			Ordering:  []oci.Ordering{oci.OrderSemver},
			Retention: &registry.Retention{KeepNewest: ptr(5), KeepYoungerThan: ptr(registry.Duration(720 * time.Hour))},
		}}},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("got  %+v\nwant %+v", *c, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig("serve", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":5000" || c.DataDir != "./data" || c.Database != filepath.Join("data", "berth.db") {
		t.Fatalf("defaults: %+v", *c)
	}
}

func TestConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(file, []byte("adr: \":7000\"\n"), 0o644)
	if _, err := loadConfig("serve", []string{"--config", file}); err == nil || !strings.Contains(err.Error(), `unknown option "adr"`) {
		t.Fatalf("misspelt key: %v", err)
	}
	if _, err := loadConfig("serve", []string{"--uploads.purge-interval", "0s"}); err == nil {
		t.Fatal("a zero purge interval was accepted")
	}
	if _, err := loadConfig("serve", []string{"--tags.ordering", "pattern", "--tags.pattern", `(\d+)`}); err == nil {
		t.Fatal("a pattern without a named group was accepted")
	}
	if _, err := loadConfig("serve", []string{"--storage.driver", "s3"}); err == nil {
		t.Fatal("s3 without a bucket was accepted")
	}
	if c, err := loadConfig("serve", []string{"--database", "host=db dbname=berth"}); err != nil || !c.isPostgres() {
		t.Fatalf("a keyword/value PostgreSQL DSN: %v, postgres %v", err, c != nil && c.isPostgres())
	}
	for _, bad := range [][]string{{"--gc.untagged", "0s"}, {"--gc.untagged", "soon"}, {"--gc.grace", "0s"},
		{"--gc.link-deadline", "0s"}, {"--gc.interval", "-1s"}} {
		if _, err := loadConfig("serve", bad); err == nil {
			t.Fatalf("%v was accepted", bad)
		}
	}
	if c, err := loadConfig("serve", []string{"--gc.untagged", "keep", "--gc.interval", "0s"}); err != nil || c.GCUntagged != 0 || c.GCInterval != 0 {
		t.Fatalf("gc.untagged keep, gc.interval 0s: %v, %+v", err, c)
	}
	for _, bad := range []string{"", "1s,", "1s,0s", "-1s", "soon"} {
		if _, err := loadConfig("serve", []string{"--webhooks.retry-schedule", bad}); err == nil {
			t.Fatalf("webhooks.retry-schedule %q was accepted", bad)
		}
	}
	if c, err := loadConfig("serve", []string{"--webhooks.retry-schedule", "100ms, 2s,1m"}); err != nil ||
		!reflect.DeepEqual([]time.Duration(c.WebhookSchedule), []time.Duration{100 * time.Millisecond, 2 * time.Second, time.Minute}) {
		t.Fatalf("webhooks.retry-schedule 100ms, 2s,1m: %v, %v", err, c)
	}
	t.Setenv("BERTH_UPLOADS_MAX_AGE", "soon")
	if _, err := loadConfig("serve", nil); err == nil || !strings.Contains(err.Error(), "BERTH_UPLOADS_MAX_AGE") {
		t.Fatalf("bad environment value: %v", err)
	}
}

// TestDeployConfigs: the example files in deploy/ load, and the single-node
// one says exactly what the defaults are.
func TestDeployConfigs(t *testing.T) {
	defaults, err := loadConfig("serve", nil)
	if err != nil {
		t.Fatal(err)
	}
	single, err := loadConfig("serve", []string{"--config", "../../deploy/berth.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	single.Database = filepath.Clean(single.Database)
	if !reflect.DeepEqual(*single, *defaults) {
		t.Fatalf("deploy/berth.yaml differs from the defaults:\n file     %+v\n defaults %+v", *single, *defaults)
	}
	t.Setenv("BERTH_DATABASE", "postgres://berth:secret@db:5432/berth")
	ha, err := loadConfig("serve", []string{"--config", "../../deploy/berth-ha.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if ha.StorageDriver != "s3" || ha.S3.Bucket == "" || !ha.isPostgres() || ha.Database != "postgres://berth:secret@db:5432/berth" {
		t.Fatalf("deploy/berth-ha.yaml: %+v", *ha)
	}
}
