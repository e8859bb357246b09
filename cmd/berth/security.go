package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthhq/berth/auth"
	"github.com/berthhq/berth/registry"
)

// authConfig is the auth.* options.
type authConfig struct {
	Method      string
	Htpasswd    string
	Policy      string
	ClientCerts bool
	Token       authTokenConfig
}

// authTokenConfig is the auth.token.* options.
type authTokenConfig struct {
	Realm, Service, Issuer string
	Key, Trust             string
	Expiry                 time.Duration
}

// tlsConfig is the tls.* options.
type tlsConfig struct{ Cert, Key, ClientCA string }

// limitsConfig is the limits.* options.
type limitsConfig struct {
	Rate              float64
	Burst             int
	Uploads           int
	FailedLogins      int
	BodyIdleTimeout   time.Duration
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

func (c *config) securityFlags(fs *flag.FlagSet) {
	a := &c.Auth
	fs.StringVar(&a.Method, "auth.method", "none", "how clients authenticate: none (everyone may do everything), basic (HTTP basic against auth.htpasswd) or token (bearer tokens from auth.token.realm)")
	fs.StringVar(&a.Htpasswd, "auth.htpasswd", "", "htpasswd file of bcrypt hashes (berth auth htpasswd USER makes a line); read again when it changes")
	fs.StringVar(&a.Policy, "auth.policy", "", "policy file: which users and groups may pull, push, delete and administer which repositories (berth auth example-policy prints one); without it every authenticated user may do everything")
	fs.BoolVar(&a.ClientCerts, "auth.client-certs", false, "accept a TLS client certificate verified by tls.client-ca as its common name's user")
	fs.StringVar(&a.Token.Realm, "auth.token.realm", "", "URL clients get tokens from (default: the built-in issuer, <public-url>/auth/token)")
	fs.StringVar(&a.Token.Service, "auth.token.service", "berth", "service name: the audience of tokens and the service of challenges")
	fs.StringVar(&a.Token.Issuer, "auth.token.issuer", "berth", "issuer of tokens (the iss claim)")
	fs.StringVar(&a.Token.Key, "auth.token.key", "", "PEM private key the built-in issuer signs tokens with, shared by all replicas (default <data>/auth-token-key.pem, created on first start)")
	fs.StringVar(&a.Token.Trust, "auth.token.trust", "", "trust an external token issuer instead of the built-in one: a PEM file of its certificates or public keys, or its JWKS")
	fs.DurationVar(&a.Token.Expiry, "auth.token.expiry", 5*time.Minute, "lifetime of the tokens the built-in issuer signs")
	fs.StringVar(&c.TLS.Cert, "tls.cert", "", "PEM certificate (chain) to serve HTTPS with, with tls.key; both read again when they change")
	fs.StringVar(&c.TLS.Key, "tls.key", "", "PEM private key of tls.cert")
	fs.StringVar(&c.TLS.ClientCA, "tls.client-ca", "", "PEM certificates of the authorities whose client certificates are verified (see auth.client-certs)")
	l := &c.Limits
	fs.Float64Var(&l.Rate, "limits.rate", 0, "requests per second one client address may make, over which it gets 429 TOOMANYREQUESTS (0: no limit)")
	fs.IntVar(&l.Burst, "limits.burst", 100, "requests one client address may make at once above limits.rate")
	fs.IntVar(&l.Uploads, "limits.uploads", 1000, "upload sessions one client (a user, or an address when anonymous) may have open at once (0: no limit)")
	fs.IntVar(&l.FailedLogins, "limits.failed-logins", 10, "refused credentials one client address may send at once; past them it may fail once a second and gets 429 until it may (0: no limit)")
	fs.DurationVar(&l.BodyIdleTimeout, "limits.body-idle-timeout", time.Minute, "how long a request body may send nothing before the request is cut off")
	fs.DurationVar(&l.ReadHeaderTimeout, "limits.read-header-timeout", 30*time.Second, "how long a client may take to send a request's headers")
	fs.DurationVar(&l.IdleTimeout, "limits.idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
	fs.IntVar(&l.MaxHeaderBytes, "limits.max-header-bytes", 64<<10, "largest request header accepted, in bytes")
}

func (c *config) checkSecurity() error {
	a := &c.Auth
	switch auth.Method(a.Method) {
	case auth.MethodNone:
	case auth.MethodBasic:
		if a.Htpasswd == "" {
			return errors.New("auth.method basic needs auth.htpasswd")
		}
	case auth.MethodToken:
		if a.Token.Trust == "" && a.Htpasswd == "" {
			return errors.New("auth.method token needs auth.htpasswd (the built-in issuer's users) or auth.token.trust (an external issuer's keys)")
		}
		if a.Token.Trust != "" && a.Token.Realm == "" {
			return errors.New("auth.token.trust needs auth.token.realm, the external issuer's URL")
		}
	default:
		return fmt.Errorf("auth.method: %q is not none, basic or token", a.Method)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tls.cert and tls.key go together")
	}
	if a.ClientCerts && c.TLS.ClientCA == "" {
		return errors.New("auth.client-certs needs tls.client-ca")
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		return errors.New("tls.client-ca needs tls.cert")
	}
	l := &c.Limits
	if l.Rate < 0 || l.Burst < 1 || l.Uploads < 0 || l.FailedLogins < 0 || l.BodyIdleTimeout <= 0 || l.ReadHeaderTimeout <= 0 ||
		l.IdleTimeout <= 0 || l.MaxHeaderBytes < 4096 {
		return errors.New("limits: rate, uploads and failed-logins must not be negative, burst must be at least 1, the timeouts positive, max-header-bytes at least 4096")
	}
	if a.Token.Expiry <= 0 {
		return errors.New("auth.token.expiry must be positive")
	}
	return nil
}

// openAuth builds the authenticator of the auth.* options; nil when
// authentication is off. Files that change later and no longer parse are
// logged, and the last good version stays in force.
func openAuth(c *config, log *slog.Logger) (*auth.Authenticator, error) {
	a := &c.Auth
	if auth.Method(a.Method) == auth.MethodNone {
		log.Warn("authentication is off: anyone who reaches the registry may push and delete (see auth.method)")
		return nil, nil
	}
	reloadFailed := func(what string) func(error) {
		return func(err error) {
			log.Error(what+" changed but cannot be read; the previous version stays in force", "error", err)
		}
	}
	o := auth.Options{Method: auth.Method(a.Method), ClientCerts: a.ClientCerts, Logger: log}
	var err error
	if a.Htpasswd != "" {
		if o.Htpasswd, err = auth.OpenHtpasswd(a.Htpasswd, reloadFailed("auth.htpasswd")); err != nil {
			return nil, err
		}
	}
	if a.Policy != "" {
		if o.Policy, err = auth.OpenPolicy(a.Policy, reloadFailed("auth.policy")); err != nil {
			return nil, err
		}
	}
	if o.Method == auth.MethodToken {
		to := auth.TokenOptions{Realm: a.Token.Realm, Service: a.Token.Service, Issuer: a.Token.Issuer,
			KeysFile: a.Token.Trust, Expiry: a.Token.Expiry}
		if to.KeysFile == "" {
			if to.Realm == "" {
				to.Realm = strings.TrimSuffix(c.PublicURL, "/") + "/auth/token"
			}
			keyFile := a.Token.Key
			if keyFile == "" {
				keyFile = filepath.Join(c.DataDir, "auth-token-key.pem")
			}
			if to.Key, err = auth.LoadOrCreateKey(keyFile); err != nil {
				return nil, fmt.Errorf("auth.token.key: %w", err)
			}
		}
		if o.Token, err = auth.NewTokens(to, reloadFailed("auth.token.trust")); err != nil {
			return nil, err
		}
	}
	return auth.New(o)
}

// newServer is the HTTP server of the registry, with the limits.* and
// tls.* options.
func newServer(c *config, h http.Handler, log *slog.Logger) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.Limits.ReadHeaderTimeout,
		IdleTimeout:       c.Limits.IdleTimeout,
		MaxHeaderBytes:    c.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if c.TLS.Cert != "" {
		cfg, err := auth.TLSConfig(c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA, func(err error) {
			log.Error("tls.cert or tls.key changed but cannot be read; the previous certificate stays in use", "error", err)
		})
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		srv.TLSConfig = cfg
	}
	return srv, nil
}

// limits is the registry's share of the limits.* options.
func (c *config) limits() registry.Limits {
	return registry.Limits{Rate: c.Limits.Rate, Burst: c.Limits.Burst, Uploads: c.Limits.Uploads,
		FailedLogins: c.Limits.FailedLogins, BodyIdleTimeout: c.Limits.BodyIdleTimeout}
}
