package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/metrics"
	"github.com/kib-project/kib/internal/redact"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/worker"
)

type serveOptions struct {
	config           string
	listen           string
	stateDir         string
	database         string
	workers          int
	remoteWorkers    bool
	lease            time.Duration
	rescueAfter      time.Duration
	heartbeatTimeout time.Duration
	definitions      string
	store            string
	cacheDir         string
	tlsCert          string
	tlsKey           string
	clientCA         string
	allowedDomains   []string
	jwksURL          string
	tenantClaims     []string
	logLevel         string
	koji             kojiConnOptions
	kojiCG           string
	fileRepos        []string
	workerDomains    []string
	workerAud        string
	artifacts        string
}

func defaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/kib"
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "state", "kib")
	}
	return filepath.Join(os.TempDir(), "kib-state")
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the compose service (osbuild-composer Cloud API v2 compatible)",
		Long: `Serve kib's compose API at /api/image-builder-composer/v2, the worker API at
/api/worker/v1 and Prometheus metrics at /metrics. The queue is an SQLite
database under --state-dir unless --database names a PostgreSQL server,
which several kib serve and kib worker processes can share.

Authentication: --client-ca with --allowed-domain (mTLS), or --jwks-url
(bearer JWTs); both need --tls-cert/--tls-key. Without them the service
only listens on loopback, for development.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd, o.config, "serve"); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML configuration file; its [serve] table sets any flag not given")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "directory for the SQLite queue and the artifacts")
	f.StringVar(&o.database, "database", "", "PostgreSQL URL (postgres://...) for a queue shared by several processes; default SQLite in --state-dir")
	f.IntVar(&o.workers, "workers", 1, "builds run at once by this process (0: none, API only)")
	f.BoolVar(&o.remoteWorkers, "remote-workers", false, "hand builds to 'kib worker' processes over the worker API instead of building here")
	f.DurationVar(&o.lease, "lease", 2*time.Minute, "with --remote-workers: how long a worker may go without a heartbeat before its build is retried elsewhere")
	f.DurationVar(&o.rescueAfter, "rescue-after", 3*time.Hour, "backstop: a job running longer than this, heartbeat or not, is presumed orphaned and retried; must exceed the longest build")
	f.DurationVar(&o.heartbeatTimeout, "job-heartbeat-timeout", 40*time.Second, "a running job whose process sent no heartbeat for this long (it was killed) is retried; heartbeats are sent every quarter of it")
	f.StringVar(&o.definitions, "definitions", "", "directory of distro definitions that override the built-in ones")
	f.StringVar(&o.store, "store", "", "engine store directory (default: --state-dir/store)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory for kib's caches (apt metadata)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "server key (PEM)")
	f.StringVar(&o.clientCA, "client-ca", "", "CA (PEM) that client certificates must chain to (mTLS)")
	f.StringSliceVar(&o.allowedDomains, "allowed-domain", nil, "with --client-ca: client certificate names allowed in (repeatable)")
	f.StringVar(&o.jwksURL, "jwks-url", "", "JWKS URL to verify bearer JWTs with")
	o.koji.bindPrefixed(f, "koji-")
	f.StringVar(&o.kojiCG, "koji-cg", kojimeta.CGName, "content generator name on the Koji hub")
	f.StringSliceVar(&o.tenantClaims, "tenant-claim", []string{"rh-org-id"}, "with --jwks-url: JWT claims naming the tenant, first non-empty wins")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringSliceVar(&o.workerDomains, "worker-allowed-domain", nil, "with --client-ca and --remote-workers: worker certificate names allowed into the worker API (repeatable; separate from --allowed-domain)")
	f.StringVar(&o.workerAud, "worker-audience", "", "with --jwks-url and --remote-workers: the JWT audience (aud) worker tokens carry; tenants' tokens lack it")
	f.StringVar(&o.artifacts, "artifacts", "", "keep artifacts in S3-compatible object storage, s3://BUCKET[/PREFIX], shared by several kib serve and kib worker machines (endpoint and credentials: the [artifacts] table of --config); default: --state-dir/artifacts")
	f.StringSliceVar(&o.fileRepos, "file-repositories", nil, "directories that compose requests may name as file: repositories (repeatable; default: none, file: repositories are refused)")
	return cmd
}

func (o *serveOptions) validate() error {
	switch {
	case o.workers < 0:
		return fmt.Errorf("--workers: %d must not be negative", o.workers)
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key: give both or neither")
	case o.clientCA != "" && o.jwksURL != "":
		return errors.New("--client-ca and --jwks-url: choose one authentication")
	case o.clientCA != "" && len(o.allowedDomains) == 0:
		return errors.New("--allowed-domain: required with --client-ca")
	case (o.clientCA != "" || o.jwksURL != "") && o.tlsCert == "":
		return errors.New("--tls-cert: authentication needs TLS")
	case o.remoteWorkers && o.clientCA != "" && len(o.workerDomains) == 0:
		return errors.New("--worker-allowed-domain: required with --remote-workers and --client-ca (workers get their own identity, tenants are refused on the worker API)")
	case o.remoteWorkers && o.jwksURL != "" && o.workerAud == "":
		return errors.New("--worker-audience: required with --remote-workers and --jwks-url (workers get their own identity, tenants are refused on the worker API)")
	}
	if o.artifacts != "" {
		if _, err := parseArtifactsFlag(o.artifacts); err != nil {
			return err
		}
	}
	if o.koji.Server != "" {
		if err := o.koji.validate(); err != nil {
			return fmt.Errorf("--koji-*: %w", err)
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level: %w", err)
	}
	return l, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (o *serveOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := slog.New(redact.Handler(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
	if o.tlsCert == "" {
		if !isLoopback(o.listen) {
			return fmt.Errorf("--listen %s: plain HTTP is for loopback only; give --tls-cert/--tls-key and an authentication", o.listen)
		}
		log.Warn("serving plain HTTP without authentication on loopback: for development only", "listen", o.listen)
	}
	cat, err := distro.Load(o.definitions)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var builder jobs.Builder
	var dispatcher *worker.Dispatcher
	switch {
	case o.remoteWorkers:
		dispatcher = worker.NewDispatcher(o.lease)
		builder = dispatcher
	case o.workers > 0:
		if b := testBuilder(); b != nil {
			builder = b
			break
		}
		storeDir := o.store
		if storeDir == "" {
			storeDir = filepath.Join(o.stateDir, "store")
		}
		st, err := store.Open(storeDir)
		if err != nil {
			return err
		}
		builder = &worker.EngineBuilder{Distros: cat, Store: st, CacheDir: o.cacheDir, FileRoots: o.fileRepos}
	}
	settings, err := readUploadSettings(o.config)
	if err != nil {
		return err
	}
	uploaders, err := settings.uploaders()
	if err != nil {
		return err
	}
	var artStore *artifacts.Store
	if o.artifacts != "" {
		if artStore, err = openArtifactStore(ctx, o.artifacts, o.config, o.stateDir); err != nil {
			return err
		}
	}
	obs := &lateObserver{}
	q, err := jobs.Open(ctx, jobs.Config{
		Uploaders: uploaders, Artifacts: artStore,
		Database: o.database, StateDir: o.stateDir, Workers: o.workers, Builder: builder, Lease: o.rescueAfter,
		HeartbeatTimeout: o.heartbeatTimeout, Heartbeat: o.heartbeatTimeout / 4,
		Koji: o.kojiImporter(artStore), Log: log.With("component", "jobs"), Observer: obs,
	})
	if err != nil {
		return err
	}
	defer q.Close()
	obs.m = metrics.New(reg, q)

	var auth composer.Authenticator
	switch {
	case o.clientCA != "":
		auth = &composer.MTLSAuth{AllowedDomains: o.allowedDomains}
	case o.jwksURL != "":
		auth = &composer.JWTAuth{KeysURL: o.jwksURL, TenantClaims: o.tenantClaims}
	}
	api, err := composer.New(composer.Config{Queue: q, Distros: cat, Auth: auth, Log: log.With("component", "composer"), UploadTargets: uploaders.Supports,
		KojiServer: o.koji.Server, FileRepositories: o.fileRepos, Artifacts: artStore})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/image-builder-composer/v2/", api)
	if dispatcher != nil {
		wh := &worker.Handler{Dispatcher: dispatcher, Log: log.With("component", "worker-api"), Artifacts: artStore}
		// Workers have their own identity: tenants are refused here.
		switch {
		case o.clientCA != "":
			wh.Authorize = (&composer.MTLSAuth{AllowedDomains: o.workerDomains}).Admit
		case o.jwksURL != "":
			wh.Authorize = (&composer.JWTAuth{KeysURL: o.jwksURL, Audience: o.workerAud}).Admit
		}
		mux.Handle(worker.BasePath+"/", wh)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: o.listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if o.tlsCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.clientCA != "" {
			pem, err := os.ReadFile(o.clientCA)
			if err != nil {
				return fmt.Errorf("--client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--client-ca %s: no PEM certificates", o.clientCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if err := q.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "kib serve: listening on %s\n", ln.Addr())
	log.Info("serving", "listen", ln.Addr().String(), "database", dbKind(o.database), "workers", o.workers, "remote_workers", o.remoteWorkers, "artifacts", artifactsKind(artStore))
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- srv.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if qerr := q.Stop(sctx); qerr != nil && err == nil {
		err = qerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func artifactsKind(st *artifacts.Store) string {
	if st == nil {
		return "local"
	}
	return st.Location().String()
}

func dbKind(dsn string) string {
	if dsn == "" {
		return "sqlite"
	}
	return "postgres"
}

// lateObserver lets the metrics, which need the queue, observe the queue.
type lateObserver struct{ m *metrics.Metrics }

func (l *lateObserver) JobDone(kind string, d time.Duration, failure string) {
	if l.m != nil {
		l.m.JobDone(kind, d, failure)
	}
}

// kojiImporter returns the Koji side of Koji composes: the hub given with
// --koji-server, logged in as the --koji-* flags say; nil without a hub, so
// Koji composes fail at koji-init with "this service has no Koji configured".
func (o *serveOptions) kojiImporter(artStore *artifacts.Store) jobs.KojiImporter {
	if o.koji.Server == "" {
		return nil
	}
	k := o.koji
	return &jobs.KojiHub{Server: k.Server, CG: o.kojiCG, Artifacts: artStore, Connect: func(ctx context.Context) (*koji.Client, error) {
		return k.connect(ctx, io.Discard, koji.DefaultUploadChunkSize, 4)
	}}
}
