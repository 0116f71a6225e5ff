package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/redact"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/worker"
)

type workerOptions struct {
	config      string
	server      string
	arch        string
	stateDir    string
	definitions string
	cacheDir    string
	heartbeat   time.Duration
	caCert      string
	clientCert  string
	clientKey   string
	tokenFile   string
	logLevel    string
}

func newWorkerCmd() *cobra.Command {
	var o workerOptions
	cmd := &cobra.Command{
		Use:   "worker --server URL",
		Short: "Build images handed out by a kib serve over its worker API",
		Long: `Take builds from the kib serve at --server (started with --remote-workers),
one at a time, run them with kib's engine here, upload the artifacts and
report the result. The worker heartbeats its job; if it dies, the server
gives the build to another worker once the lease expires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd, o.config, "worker"); err != nil {
				return err
			}
			if o.server == "" {
				return errors.New("--server: required")
			}
			if (o.clientCert == "") != (o.clientKey == "") {
				return errors.New("--client-cert and --client-key: give both or neither")
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML configuration file; its [worker] table sets any flag not given")
	f.StringVar(&o.server, "server", "", "base URL of the kib serve, e.g. https://kib.example.org:8080")
	f.StringVar(&o.arch, "arch", "x86_64", "architecture this worker builds")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "directory for the engine store and job files")
	f.StringVar(&o.definitions, "definitions", "", "directory of distro definitions that override the built-in ones")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory for kib's caches (apt metadata)")
	f.DurationVar(&o.heartbeat, "heartbeat", 15*time.Second, "interval of job heartbeats")
	f.StringVar(&o.caCert, "ca", "", "CA (PEM) to verify the server with")
	f.StringVar(&o.clientCert, "client-cert", "", "client certificate (PEM) for mTLS")
	f.StringVar(&o.clientKey, "client-key", "", "client key (PEM) for mTLS")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the worker's JWT (for a server with --jwks-url and --worker-audience)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (o *workerOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := slog.New(redact.Handler(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
	cat, err := distro.Load(o.definitions)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(o.stateDir, "store"))
	if err != nil {
		return err
	}
	work := filepath.Join(o.stateDir, "work")
	if err := os.MkdirAll(work, 0o750); err != nil {
		return err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caCert != "" {
		pem, err := os.ReadFile(o.caCert)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no PEM certificates", o.caCert)
		}
	}
	if o.clientCert != "" {
		c, err := tls.LoadX509KeyPair(o.clientCert, o.clientKey)
		if err != nil {
			return fmt.Errorf("--client-cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	var token string
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	var builder jobs.Builder = &worker.EngineBuilder{Distros: cat, Store: st, CacheDir: o.cacheDir, AnyFile: true}
	if tb := testBuilder(); tb != nil {
		builder = tb
	}
	artCfg, err := readArtifactSettings(o.config, o.stateDir)
	if err != nil {
		return err
	}
	w := &worker.Remote{
		Artifacts: artCfg,
		Server:    o.server, HTTP: &http.Client{Transport: tr}, Arch: o.arch, WorkDir: work, Heartbeat: o.heartbeat, Token: token,
		Builder: builder, Log: log,
	}
	fmt.Fprintf(cmd.OutOrStdout(), "kib worker: taking %s builds from %s\n", o.arch, o.server)
	return w.Run(ctx)
}
