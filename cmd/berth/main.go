// Command berth is the Berth container registry: `berth serve` runs it, and
// the other commands administer a running one through its admin API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/registry"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
	"github.com/berthhq/berth/storage/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// usage lists every command: serve, then the admin commands.
func usage() string {
	var b strings.Builder
	b.WriteString(`Berth is a container registry.

Usage:
  berth serve [flags]   run the registry (berth serve --help lists the flags)
  berth rollout [flags] roll Swarm services and Kubernetes Deployments to the
                        newest image on Berth's webhooks (berth rollout --help)
  berth check [flags]   compare metadata with storage: missing, mis-sized,
                        corrupt (--rehash) and orphan blobs; --repair deletes
                        the orphans (berth check --help)
  berth health [--url URL]
                        exit 0 if the registry at URL (default
                        http://127.0.0.1:5000) answers GET /readyz with 200:
                        a container's health check
  berth auth htpasswd USER
                        print an htpasswd line for USER, password on stdin
  berth auth example-policy
                        print an example auth policy file

Admin commands, clients of a running registry's admin API:
`)
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	for _, a := range adminCommands {
		fmt.Fprintf(tw, "  berth %s\t%s\n", strings.TrimSpace(a.name+" "+a.args), a.about)
	}
	tw.Flush()
	b.WriteString(`
Every admin command takes --url (default $BERTH_URL, else http://localhost:5000),
--user and --password (default $BERTH_USER and $BERTH_PASSWORD, sent as HTTP basic
authentication) and --json (print the server's JSON); listings follow every page
unless --limit N. berth COMMAND --help lists a command's flags. The webhook commands
name the receiver with --target, and take --secret from $BERTH_WEBHOOK_SECRET.
`)
	return b.String()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage())
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "rollout":
		err = rollout(os.Args[2:])
	case "check":
		err = check(os.Args[2:], os.Stdout, os.Stderr)
	case "auth":
		err = authCommand(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	case "health":
		err = health(os.Args[2:], os.Stderr)
	case "help", "-h", "--help":
		fmt.Print(usage())
		return
	default:
		var ok bool
		if ok, err = runAdmin(os.Args[1:], os.Stdout, os.Stderr); !ok {
			fmt.Fprintf(os.Stderr, "berth: unknown command %q\n\n%s", os.Args[1], usage())
			os.Exit(2)
		}
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if !ue.shown {
			fmt.Fprintln(os.Stderr, "berth:", err)
		}
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}

func newLogger(c *config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	o := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("log.format: %q is neither text nor json", c.LogFormat)
}

// serve runs the registry until SIGINT or SIGTERM, then lets in-flight
// requests finish.
func serve(args []string) error {
	c, err := loadConfig("serve", args)
	if err != nil {
		return err
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := openStore(ctx, c, metrics)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, c, metrics)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := syncWebhooks(ctx, db, c.Webhooks); err != nil {
		return err
	}
	metrics.MustRegister(registry.NewStatsCollector(db))
	u, _ := url.Parse(c.PublicURL) // checked by loadConfig
	dispatcher := notify.New(notify.Options{Metrics: metrics,
		DB: db, Registry: notify.Registry{Host: u.Host, URL: c.PublicURL, InstanceID: instanceID()}, Logger: log,
		Client: &http.Client{Timeout: c.WebhookTimeout}, Schedule: c.WebhookSchedule, MaxAge: c.WebhookMaxAge,
		PauseAfter: c.WebhookPauseAfter, PauseFor: c.WebhookPauseFor, Concurrency: c.WebhookConcurrency,
	})
	dispatched := make(chan struct{})
	go func() { defer close(dispatched); dispatcher.Run(ctx) }()
	// On the way out, whatever the reason (a signal, or the listener
	// failing): end the dispatcher, whose attempts in flight are cut short
	// and recorded, and wait for it.
	defer func() { stop(); <-dispatched }()

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	collector := gc.New(gc.Options{DB: db, Store: store, Logger: log, Grace: c.GCGrace, Untagged: time.Duration(c.GCUntagged),
		RestoreWindow: c.RestoreWindow, LinkDeadline: c.GCLinkDeadline, UploadMaxAge: c.UploadMaxAge, Metrics: metrics})
	authn, err := openAuth(c, log)
	if err != nil {
		return err
	}
	reg := registry.New(registry.Options{
		Store: store, DB: db, Logger: log, RedirectExpiry: c.Redirect,
		Policy: c.policy(), PolicyRules: c.Policies, RestoreWindow: c.RestoreWindow, Dispatcher: dispatcher,
		GC: collector, LinkDeadline: c.GCLinkDeadline, Auth: authn, Limits: c.limits(), Metrics: metrics,
	})
	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, metrics, reg.Health(), log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	srv, err := newServer(c, reg, log)
	if err != nil {
		return err
	}
	go purgeUploads(ctx, log, db, store, c)
	go every(ctx, time.Hour, func() {
		var n int64
		err := db.InTx(ctx, func(tx *metadata.Tx) (err error) {
			n, err = tx.PruneOutbox(ctx, time.Now().Add(-c.WebhookKeep).UnixNano())
			return err
		})
		if err != nil && ctx.Err() == nil {
			log.Error("webhooks: pruning delivered deliveries", "error", err)
		} else if n > 0 {
			log.Info("webhooks: pruned delivered deliveries", "deliveries", n)
		}
	})
	if c.GCInterval > 0 {
		go every(ctx, c.GCInterval, func() {
			// Every replica tries; the one that takes the lock runs.
			if _, err := collector.Run(ctx, false); err != nil && !errors.Is(err, gc.ErrRunning) && ctx.Err() == nil {
				log.Error("gc: run failed", "error", err)
			}
		})
	}
	go every(ctx, c.RetentionInterval, func() {
		if _, err := reg.EnforceRetention(ctx); err != nil && ctx.Err() == nil {
			log.Error("enforcing retention", "error", err)
		}
	})

	log.Info("berth serving", "addr", ln.Addr().String(), "storage", c.StorageDriver, "metadata", map[bool]string{true: "postgres", false: c.Database}[c.isPostgres()])
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_delay", c.DrainDelay, "timeout", c.ShutdownTimeout)
	// /readyz answers 503 from now on, on the main listener for the drain
	// delay and on the debug one until the requests in flight are done, so
	// load balancers stop sending work while it finishes.
	reg.Drain()
	stop()                   // a second signal ends the process at once, default handling
	time.Sleep(c.DrainDelay) // requests keep being served meanwhile
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// serveDebug serves the debug listener: Prometheus metrics at /metrics,
// and health's /healthz and /readyz.
func serveDebug(addr string, metrics *prometheus.Registry, health http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug.addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("debug listener", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// syncWebhooks stores the configuration file's webhook endpoints.
func syncWebhooks(ctx context.Context, db *metadata.DB, endpoints []notify.Endpoint) error {
	bodies := map[string]string{}
	for _, ep := range endpoints {
		b, err := json.Marshal(ep)
		if err != nil {
			return err
		}
		bodies[ep.Name] = string(b)
	}
	return db.InTx(ctx, func(tx *metadata.Tx) error { return tx.SyncConfigWebhooks(ctx, bodies) })
}

// instanceID names this process in webhook deliveries: host name and pid.
func instanceID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// openDB opens the configured metadata database, creating a SQLite file's
// directory if need be; its metrics go to metrics (nil: none).
func openDB(ctx context.Context, c *config, metrics prometheus.Registerer) (*metadata.DB, error) {
	mo := metadata.Options{PostgresURL: c.Database}
	if !c.isPostgres() {
		mo = metadata.Options{SQLitePath: c.Database}
		if err := os.MkdirAll(filepath.Dir(c.Database), 0o755); err != nil {
			return nil, err
		}
	}
	mo.Route, mo.Metrics = notify.Router(), metrics
	return metadata.Open(ctx, mo)
}

// openStore opens the configured storage driver; its metrics go to
// metrics (nil: none).
func openStore(ctx context.Context, c *config, metrics prometheus.Registerer) (*storage.Store, error) {
	if c.StorageDriver == "s3" {
		o := c.S3
		o.Metrics = metrics
		d, err := s3.New(ctx, o)
		if err != nil {
			return nil, err
		}
		// A wrong bucket or credentials fail here, not on the first push.
		if err := d.Check(ctx); err != nil {
			return nil, err
		}
		return storage.NewStore(d), nil
	}
	d, err := disk.New(c.DataDir, disk.Options{NoSync: !c.DiskFsync})
	if err != nil {
		return nil, err
	}
	return storage.NewStore(d), nil
}

// purgeUploads reclaims abandoned uploads every purge interval.
func purgeUploads(ctx context.Context, log *slog.Logger, db *metadata.DB, store *storage.Store, c *config) {
	every(ctx, c.UploadPurgeInterval, func() {
		rep, err := gc.PurgeUploads(ctx, db, store, time.Now().Add(-c.UploadMaxAge))
		if err != nil && ctx.Err() == nil {
			log.Error("purging abandoned uploads", "error", err)
		}
		if rep.Sessions+rep.Files > 0 {
			log.Info("purged abandoned uploads", "sessions", rep.Sessions, "files", rep.Files, "bytes", rep.Bytes)
		}
	})
}

// every runs fn now and then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
