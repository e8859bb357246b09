package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/registry"
	"github.com/berthhq/berth/storage/s3"
	"go.yaml.in/yaml/v3"
)

// config is every setting of `berth serve`. Each field is one option that a
// YAML file, a BERTH_* environment variable and a flag can set, in that
// order of precedence (a flag wins).
type config struct {
	Addr              string
	DataDir           string
	StorageDriver     string
	DiskFsync         bool
	S3                s3.Options
	Redirect          time.Duration
	Database          string
	TagOrdering       string
	TagPattern        string
	MutableNumbered   bool
	RefuseLower       bool
	RestoreWindow     time.Duration
	RetentionInterval time.Duration
	// Policies are per-repository tag policies; only the YAML file has them.
	Policies           []registry.PolicyRule
	PublicURL          string
	DebugAddr          string
	WebhookTimeout     time.Duration
	WebhookMaxAge      time.Duration
	WebhookPauseAfter  int
	WebhookPauseFor    time.Duration
	WebhookConcurrency int
	WebhookKeep        time.Duration
	WebhookSchedule    durations
	// Webhooks are the webhook endpoints of the YAML file (webhooks.endpoints).
	Webhooks            []notify.Endpoint
	LogLevel            string
	LogFormat           string
	UploadMaxAge        time.Duration
	UploadPurgeInterval time.Duration
	ShutdownTimeout     time.Duration
	DrainDelay          time.Duration
	GCInterval          time.Duration
	GCGrace             time.Duration
	GCUntagged          untagged
	GCLinkDeadline      time.Duration
	Auth                authConfig
	TLS                 tlsConfig
	Limits              limitsConfig
}

// untagged is gc.untagged: keep, or how long an untagged manifest is kept.
type untagged time.Duration

func (u *untagged) String() string {
	if *u == 0 {
		return "keep"
	}
	return time.Duration(*u).String()
}

func (u *untagged) Set(s string) error {
	if s == "keep" {
		*u = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is neither keep nor a positive duration", s)
	}
	*u = untagged(d)
	return nil
}

// policy is the default tag policy, from the tags.* options.
func (c *config) policy() registry.Policy {
	var orders []oci.Ordering
	for _, o := range strings.Split(c.TagOrdering, ",") {
		orders = append(orders, oci.Ordering(strings.TrimSpace(o)))
	}
	immutable := !c.MutableNumbered
	return registry.Policy{Ordering: orders, Pattern: c.TagPattern, ImmutableNumbered: &immutable, RefuseLower: &c.RefuseLower}
}

// isPostgres reports whether the database option names a PostgreSQL server
// rather than a SQLite file.
func (c *config) isPostgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://") ||
		strings.Contains(c.Database, "host=") || strings.Contains(c.Database, "dbname=") // keyword/value form
}

// flags declares the options. A dotted name is a nested key in the YAML file
// (log.level: under log:) and BERTH_LOG_LEVEL in the environment.
func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", ":5000", "address to serve the registry API on")
	fs.StringVar(&c.DataDir, "data", "./data", "directory for blobs and uploads (the disk storage driver)")
	fs.StringVar(&c.StorageDriver, "storage.driver", "disk", "where blob bytes live: disk (under --data) or s3")
	fs.BoolVar(&c.DiskFsync, "storage.disk.fsync", true, "fsync blobs before acknowledging them; false is faster but a machine crash can lose acknowledged blobs")
	fs.DurationVar(&c.Redirect, "storage.redirect", 0, "answer blob GETs with a 307 to a presigned storage URL valid this long (s3 only; 0 streams through Berth)")
	fs.StringVar(&c.S3.Bucket, "storage.s3.bucket", "", "S3 bucket (it must exist)")
	fs.StringVar(&c.S3.Region, "storage.s3.region", "", "S3 region (default: the SDK's environment, else us-east-1)")
	fs.StringVar(&c.S3.Endpoint, "storage.s3.endpoint", "", "URL of an S3-compatible server (default: AWS S3)")
	fs.BoolVar(&c.S3.PathStyle, "storage.s3.path-style", false, "address buckets as <endpoint>/<bucket> (most S3-compatible servers need it)")
	fs.StringVar(&c.S3.Prefix, "storage.s3.prefix", "", "prefix for every key, to share a bucket")
	fs.StringVar(&c.S3.AccessKey, "storage.s3.access-key", "", "static access key (default: the SDK's credential chain: environment, shared config, web identity)")
	fs.StringVar(&c.S3.SecretKey, "storage.s3.secret-key", "", "static secret key, with --storage.s3.access-key")
	fs.StringVar(&c.S3.StorageClass, "storage.s3.storage-class", "", "storage class of stored objects (default: the bucket's)")
	fs.StringVar(&c.S3.SSE, "storage.s3.sse", "", "server-side encryption: AES256 or aws:kms (default: the bucket's)")
	fs.StringVar(&c.S3.SSEKMSKeyID, "storage.s3.sse-kms-key-id", "", "KMS key for --storage.s3.sse=aws:kms")
	fs.Int64Var(&c.S3.PartSize, "storage.s3.part-size", 8<<20, "multipart part size in bytes, at least 5 MiB; also the memory each upload buffers")
	fs.IntVar(&c.S3.MaxAttempts, "storage.s3.max-attempts", 5, "tries of an S3 request before its error is returned")
	fs.StringVar(&c.Database, "database", "", "metadata database: a SQLite file, or a postgres:// URL (default <data>/berth.db)")
	fs.StringVar(&c.TagOrdering, "tags.ordering", "integer,semver", "how tags read as versions (numbered tags): integer, semver, pattern or lexical, several tried in turn")
	fs.StringVar(&c.TagPattern, "tags.pattern", "", "regular expression of the pattern ordering; its named groups are numbers compared left to right")
	fs.BoolVar(&c.MutableNumbered, "tags.mutable-numbered", false, "let a push move a numbered tag to another manifest (by default numbered tags are immutable)")
	fs.BoolVar(&c.RefuseLower, "tags.refuse-lower", false, "refuse a new numbered tag older than the repository's newest")
	fs.DurationVar(&c.RestoreWindow, "tags.restore-window", 14*24*time.Hour, "how long a deleted tag can be restored (garbage collection keeps what it points at)")
	fs.DurationVar(&c.RetentionInterval, "tags.retention-interval", 10*time.Minute, "how often to apply the retention rules of the tag policies")
	fs.StringVar(&c.DebugAddr, "debug.addr", "", "address of the debug listener, which serves Prometheus /metrics, /healthz and /readyz (empty: none)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the registry's URL as clients and webhook receivers reach it (default http://<host name>:<port of --addr>)")
	fs.DurationVar(&c.WebhookTimeout, "webhooks.timeout", 10*time.Second, "how long a webhook delivery may take")
	fs.DurationVar(&c.WebhookMaxAge, "webhooks.max-age", 24*time.Hour, "how long a failing webhook delivery is retried before it is dead-lettered")
	fs.IntVar(&c.WebhookPauseAfter, "webhooks.pause-after", 10, "consecutive failures that pause a webhook endpoint")
	fs.DurationVar(&c.WebhookPauseFor, "webhooks.pause-for", 5*time.Minute, "how long a paused webhook endpoint waits")
	fs.IntVar(&c.WebhookConcurrency, "webhooks.concurrency", 16, "webhook deliveries in flight at once")
	fs.DurationVar(&c.WebhookKeep, "webhooks.keep-delivered", 7*24*time.Hour, "how long delivered webhook deliveries and their attempt log are kept (dead ones stay until redelivered)")
	c.WebhookSchedule = notify.DefaultSchedule()
	fs.Var(&c.WebhookSchedule, "webhooks.retry-schedule", "waits before the retries of a failed webhook delivery, comma-separated, the last repeated until webhooks.max-age; each is jittered by up to a fifth and a receiver's Retry-After can lengthen it")
	fs.StringVar(&c.LogLevel, "log.level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log.format", "text", "log format: text or json")
	fs.DurationVar(&c.UploadMaxAge, "uploads.max-age", 24*time.Hour, "reclaim uploads untouched for this long")
	fs.DurationVar(&c.UploadPurgeInterval, "uploads.purge-interval", 10*time.Minute, "how often to look for abandoned uploads")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long to let requests finish on shutdown")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on shutdown, how long to keep serving with /readyz answering 503 before closing the listener, so load balancers probing it stop sending first (Kubernetes: a few seconds)")
	fs.DurationVar(&c.GCInterval, "gc.interval", time.Hour, "how often to collect garbage: unreferenced blobs, untagged manifests (see gc.untagged), orphan bytes, abandoned uploads (0: only on demand)")
	fs.DurationVar(&c.GCGrace, "gc.grace", time.Hour, "garbage collection keeps whatever was linked or needed more recently than this")
	fs.Var(&c.GCUntagged, "gc.untagged", "keep untagged manifests (keep), or delete those untagged for longer than this duration")
	fs.DurationVar(&c.GCLinkDeadline, "gc.link-deadline", time.Minute, "how long an upload may take between finding its blob's bytes in place and recording the blob; collection waits as long between deleting bytes and forgetting them")
	c.securityFlags(fs)
}

func envName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

// loadConfig parses args, then fills every option not given as a flag from
// the environment, then from the YAML file named by --config or BERTH_CONFIG.
// A command other than serve (berth check) declares its own flags in extra;
// those are read from the command line only.
func loadConfig(name string, args []string, extra ...func(*flag.FlagSet)) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.flags(fs)
	configFile := fs.String("config", os.Getenv("BERTH_CONFIG"), "YAML configuration file (keys as the flag names, dots nest)")
	shared := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { shared[f.Name] = f.Name != "config" })
	for _, declare := range extra {
		declare(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: berth %s [flags]\n\nEvery flag can also be set in the YAML file or as BERTH_<NAME> in the environment,\nfor example --log.level as BERTH_LOG_LEVEL; flags override the environment, which overrides the file.\n", name)
		if len(extra) > 0 {
			fmt.Fprintf(fs.Output(), "The flags of berth %s itself, which serve does not have, are read from the command line only.\n", name)
		}
		fmt.Fprint(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	fromFile := map[string]string{}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return nil, err
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", *configFile, err)
		}
		if p, ok := doc["policies"]; ok {
			if c.Policies, err = decodeStrict[registry.PolicyRule](p); err != nil {
				return nil, fmt.Errorf("%s: policies: %w", *configFile, err)
			}
			delete(doc, "policies")
		}
		if w, ok := doc["webhooks"].(map[string]any); ok && w["endpoints"] != nil {
			if c.Webhooks, err = decodeStrict[notify.Endpoint](w["endpoints"]); err != nil {
				return nil, fmt.Errorf("%s: webhooks.endpoints: %w", *configFile, err)
			}
			delete(w, "endpoints")
		}
		flatten("", doc, fromFile)
	}
	var errs []error
	keys := make([]string, 0, len(fromFile))
	for k := range fromFile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !shared[k] {
			errs = append(errs, fmt.Errorf("%s: unknown option %q", *configFile, k))
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] || !shared[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		src := envName(f.Name)
		if !ok {
			v, ok = fromFile[f.Name]
			src = *configFile + ": " + f.Name
		}
		if ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", src, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Database == "" {
		c.Database = filepath.Join(c.DataDir, "berth.db")
	}
	for name, d := range map[string]time.Duration{
		"uploads.max-age": c.UploadMaxAge, "uploads.purge-interval": c.UploadPurgeInterval, "shutdown-timeout": c.ShutdownTimeout,
		"tags.restore-window": c.RestoreWindow, "tags.retention-interval": c.RetentionInterval,
		"webhooks.timeout": c.WebhookTimeout, "webhooks.max-age": c.WebhookMaxAge, "webhooks.pause-for": c.WebhookPauseFor,
		"webhooks.keep-delivered": c.WebhookKeep, "gc.grace": c.GCGrace, "gc.link-deadline": c.GCLinkDeadline,
	} {
		if d <= 0 {
			return nil, fmt.Errorf("%s must be positive, not %s", name, d)
		}
	}
	if err := registry.ValidatePolicyRules(append([]registry.PolicyRule{{Repositories: "*", Policy: c.policy()}}, c.Policies...)); err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	if c.GCInterval < 0 {
		return nil, fmt.Errorf("gc.interval must not be negative, not %s", c.GCInterval)
	}
	if c.WebhookPauseAfter < 1 || c.WebhookConcurrency < 1 {
		return nil, errors.New("webhooks.pause-after and webhooks.concurrency must be at least 1")
	}
	names := map[string]bool{}
	for i, ep := range c.Webhooks {
		// A secret written ${NAME} is read from the environment, to keep it
		// out of the file.
		for j, secret := range ep.Secrets {
			if name, ok := strings.CutPrefix(secret, "${"); ok && strings.HasSuffix(name, "}") {
				name = strings.TrimSuffix(name, "}")
				v, ok := os.LookupEnv(name)
				if !ok {
					return nil, fmt.Errorf("webhooks.endpoints: %s: secret ${%s}: %s is not set", ep.Name, name, name)
				}
				c.Webhooks[i].Secrets[j], ep.Secrets[j] = v, v
			}
		}
		if err := ep.Validate(); err != nil {
			return nil, fmt.Errorf("webhooks.endpoints: %w", err)
		}
		if names[ep.Name] {
			return nil, fmt.Errorf("webhooks.endpoints: two endpoints are named %s", ep.Name)
		}
		names[ep.Name] = true
	}
	if c.PublicURL == "" {
		c.PublicURL = defaultPublicURL(c.Addr, c.TLS.Cert != "")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("public-url %q is not an http or https URL", c.PublicURL)
	}
	if c.Redirect < 0 {
		return nil, fmt.Errorf("storage.redirect must not be negative")
	}
	if err := c.checkSecurity(); err != nil {
		return nil, err
	}
	switch c.StorageDriver {
	case "disk":
	case "s3":
		if c.S3.Bucket == "" {
			return nil, errors.New("storage.driver s3 needs storage.s3.bucket")
		}
	default:
		return nil, fmt.Errorf("storage.driver: %q is neither disk nor s3", c.StorageDriver)
	}
	return c, nil
}

// durations is a flag of comma-separated durations: "100ms,2s,1m".
type durations []time.Duration

func (d *durations) String() string {
	var s []string
	for _, v := range *d {
		// 2m0s → 2m, 1h0m0s → 1h
		str := v.String()
		if strings.HasSuffix(str, "m0s") {
			str = strings.TrimSuffix(str, "0s")
		}
		if strings.HasSuffix(str, "h0m") {
			str = strings.TrimSuffix(str, "0m")
		}
		s = append(s, str)
	}
	return strings.Join(s, ",")
}

func (d *durations) Set(v string) error {
	var list durations
	for _, f := range strings.Split(v, ",") {
		w, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		if w <= 0 {
			return fmt.Errorf("%s is not a positive duration", w)
		}
		list = append(list, w)
	}
	*d = list
	return nil
}

// defaultPublicURL is http://<host name>:<port of addr>.
func defaultPublicURL(addr string, https bool) string {
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "localhost:5000"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if host, err = os.Hostname(); err != nil {
			host = "localhost"
		}
	}
	return scheme + net.JoinHostPort(host, port)
}

// decodeStrict reads a list of the YAML file (policies, webhook
// endpoints), refusing unknown keys.
func decodeStrict[T any](v any) ([]T, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var list []T
	if err := dec.Decode(&list); err != nil {
		return nil, err
	}
	return list, nil
}

// flatten turns nested YAML maps into dotted keys: {log: {level: x}} is log.level=x.
func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, child := range m {
			if prefix != "" {
				k = prefix + "." + k
			}
			flatten(k, child, out)
		}
		return
	}
	out[prefix] = fmt.Sprint(v)
}
