package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojid"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/worker"
)

type kojidOptions struct {
	config      string
	conn        kojiConnOptions
	workDir     string
	stateDir    string
	cacheDir    string
	definitions string
	distro      string
	interval    time.Duration
	waitPoll    time.Duration
	maxJobs     int
	minSpace    string
	maxLoad     float64
	topDir      string
	logLevel    string
	composer    composerOptions
	cg          kojiConnOptions
	cgName      string
}

// composerOptions are [kojid.composer]: the compose service osbuildImage
// tasks go to (remote mode), with koji-osbuild's builder.conf settings.
// Without a server, osbuildImage tasks are built on this host (local mode).
type composerOptions struct {
	server, cert, key, ca string
	insecure              bool
	clientID              string
	clientSecretFile      string
	tokenURL              string
	proxy                 string
	kojiServer            string
	topURL                string
	builderConf           string
}

func (c *composerOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&c.builderConf, "composer-builder-conf", "", "koji-osbuild's builder.conf to read the compose service settings from (flags override it)")
	f.StringVar(&c.server, "composer-server", "", "compose service (Cloud API) osbuildImage tasks go to; none builds them on this host")
	f.StringVar(&c.cert, "composer-cert", "", "client certificate for mTLS to the compose service (ssl_cert)")
	f.StringVar(&c.key, "composer-key", "", "private key of --composer-cert, if not in the same file")
	f.StringVar(&c.ca, "composer-ca", "", "CA bundle verifying the compose service (ssl_verify as a path; default system roots)")
	f.BoolVar(&c.insecure, "composer-insecure", false, "do not verify the compose service's certificate (ssl_verify = false)")
	f.StringVar(&c.clientID, "composer-client-id", "", "OAuth client id ([composer:oauth] client_id)")
	f.StringVar(&c.clientSecretFile, "composer-client-secret-file", "", "file holding the OAuth client secret ([composer:oauth] client_secret)")
	f.StringVar(&c.tokenURL, "composer-token-url", "", "OAuth token URL ([composer:oauth] token_url)")
	f.StringVar(&c.proxy, "composer-proxy", "", "proxy URL for the compose service")
	f.StringVar(&c.kojiServer, "composer-koji-server", "", "hub URL named in compose requests ([koji] server; default --server)")
	f.StringVar(&c.topURL, "composer-topurl", "", "the hub's file URL (kojid.conf topurl), for the build tag's repository")
}

// config returns the remote compose service, nil for local mode, and the
// hub URL compose requests name.
func (c *composerOptions) config(hub string) (*kojid.ComposerConfig, string, error) {
	kojiServer := hub
	var cc *kojid.ComposerConfig
	if c.builderConf != "" {
		f, err := os.Open(c.builderConf)
		if err != nil {
			return nil, "", fmt.Errorf("--composer-builder-conf: %w", err)
		}
		bc, err := kojid.ParseBuilderConf(f)
		f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("--composer-builder-conf %s: %w", c.builderConf, err)
		}
		cc, kojiServer = &bc.Composer, bc.KojiServer
	}
	if c.kojiServer != "" {
		kojiServer = c.kojiServer
	}
	if c.server == "" && cc == nil {
		for flag, v := range map[string]string{"cert": c.cert, "key": c.key, "ca": c.ca, "client-id": c.clientID,
			"client-secret-file": c.clientSecretFile, "token-url": c.tokenURL, "proxy": c.proxy} {
			if v != "" {
				return nil, "", fmt.Errorf("--composer-%s: needs --composer-server (without one osbuildImage tasks are built on this host)", flag)
			}
		}
		return nil, kojiServer, nil
	}
	if cc == nil {
		cc = &kojid.ComposerConfig{}
	}
	for _, s := range []struct {
		dst *string
		v   string
	}{{&cc.Server, c.server}, {&cc.CertFile, c.cert}, {&cc.KeyFile, c.key}, {&cc.CAFile, c.ca}, {&cc.Proxy, c.proxy}} {
		if s.v != "" {
			*s.dst = s.v
		}
	}
	cc.Insecure = cc.Insecure || c.insecure
	if c.clientID != "" || c.clientSecretFile != "" || c.tokenURL != "" {
		if c.clientID == "" || c.clientSecretFile == "" || c.tokenURL == "" {
			return nil, "", errors.New("--composer-client-id, --composer-client-secret-file and --composer-token-url: OAuth needs all three")
		}
		secret, err := os.ReadFile(c.clientSecretFile)
		if err != nil {
			return nil, "", fmt.Errorf("--composer-client-secret-file: %w", err)
		}
		cc.OAuth = &kojid.OAuthConfig{ClientID: c.clientID, ClientSecret: strings.TrimSpace(string(secret)), TokenURL: c.tokenURL}
	}
	if cc.Server == "" {
		return nil, "", errors.New("--composer-server: the compose service URL is required")
	}
	return cc, kojiServer, nil
}

func newKojidCmd() *cobra.Command { return bindKojidCmd(&kojidOptions{}) }

// bindKojidCmd returns the kojid command with its flags bound to o.
func bindKojidCmd(o *kojidOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kojid --server URL (--cert FILE | --principal P --keytab FILE)",
		Short: "Run Koji image build tasks as a Koji build host",
		Long: `Log in to a Koji hub as a build host and run the tasks the hub assigns to it,
as kojid does: imageBuilderBuild (from the unchanged koji-image-builder hub
plugin), its imageBuilderBuildArch subtasks, built here with kib's engine,
osbuildImage (from koji-osbuild's hub plugin, or Pungi's osbuild phase) and
tagBuild. osbuildImage tasks go to the compose service given with
--composer-server ([kojid.composer] in kib.toml: mTLS or OAuth, as
koji-osbuild's builder.conf has them); without one they are built on this
host with kib's engine and imported as a content generator build (--cg-*). The host must be enrolled on the hub (koji add-host) and be in
channel "image"; see the README's "Koji build hosts" section.

On SIGTERM the daemon stops its tasks, hands them back to the hub and reports
itself not ready; after a crash it frees the tasks the hub still assigns to
it when it starts again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd, o.config, "kojid"); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML configuration file; its [kojid] table sets any flag not given")
	o.conn.bind(f)
	f.StringVar(&o.workDir, "work-dir", "/var/tmp/kib-kojid", "directory for the tasks' scratch files")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "directory for the engine store (shared by all tasks)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory for kib's caches (apt metadata)")
	f.StringVar(&o.definitions, "definitions", "", "directory of distro definitions that override the built-in ones")
	f.StringVar(&o.distro, "distro", "debian-12", "distro built when a task names none (opts.distro)")
	f.DurationVar(&o.interval, "interval", time.Second, "pause between polls of the hub when idle (kojid's sleeptime; each poll is four small calls)")
	f.DurationVar(&o.waitPoll, "wait-poll", 30*time.Second, "how often a task waiting for subtasks polls without an alert from the hub")
	f.IntVar(&o.maxJobs, "max-jobs", 10, "most tasks run at once")
	f.StringVar(&o.minSpace, "min-space", "8GiB", "free space the work dir needs for the host to take tasks (0 disables)")
	f.Float64Var(&o.maxLoad, "max-load", 4.0, "highest load average per CPU at which the host takes tasks (0 disables)")
	f.StringVar(&o.topDir, "topdir", kojid.DefaultTopDir, "the hub's topdir, for the paths in task results")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.composer.bind(f)
	o.cg.bindPrefixed(f, "cg-")
	f.StringVar(&o.cgName, "cg", kojimeta.CGName, "content generator name local osbuildImage builds are imported as")
	return cmd
}

func (o *kojidOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	if err := o.conn.validate(); err != nil {
		return err
	}
	if o.conn.User == "" && o.conn.Cert == "" && o.conn.Principal == "" {
		return errors.New("kojid needs the host's login: give --cert (the host's certificate), --principal/--keytab, or --user")
	}
	if o.maxJobs <= 0 {
		return fmt.Errorf("--max-jobs: %d must be positive", o.maxJobs)
	}
	minSpace := int64(-1)
	if o.minSpace != "0" && o.minSpace != "" {
		n, err := blueprint.ParseSize(o.minSpace)
		if err != nil {
			return fmt.Errorf("--min-space: %w", err)
		}
		minSpace = n
	}
	maxLoad := o.maxLoad
	if maxLoad == 0 {
		maxLoad = -1
	}
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	if os.Geteuid() != 0 {
		return errors.New("kib kojid must run as root: image builds need mmdebstrap's root mode, loop devices and mounts")
	}
	d, closeHandlers, err := o.daemon(ctx, log, cmd.ErrOrStderr(), minSpace, maxLoad, nil)
	if err != nil {
		return err
	}
	defer closeHandlers()
	return d.Run(ctx)
}

// daemon wires the daemon and its handlers. composeBuilder builds local
// osbuildImage images; nil means kib's engine (tests pass a fake). The
// returned func stops local mode's compose service.
func (o *kojidOptions) daemon(ctx context.Context, log *slog.Logger, stderr io.Writer, minSpace int64, maxLoad float64, composeBuilder jobs.Builder) (*kojid.Daemon, func(), error) {
	cc, kojiServer, err := o.composer.config(o.conn.Server)
	if err != nil {
		return nil, nil, err
	}
	if o.cg.Server == "" {
		o.cg.Server = o.conn.Server
	}
	if err := o.cg.validate(); err != nil {
		return nil, nil, fmt.Errorf("--cg-*: %w", err)
	}
	st, err := store.Open(filepath.Join(o.stateDir, "store"))
	if err != nil {
		return nil, nil, err
	}
	osb := kojid.OSBuildConfig{KojiServer: kojiServer, TopURL: o.composer.topURL, Composer: cc}
	if cc == nil {
		cat, err := distro.Load(o.definitions)
		if err != nil {
			return nil, nil, err
		}
		if composeBuilder == nil {
			composeBuilder = &worker.EngineBuilder{Distros: cat, Store: st, CacheDir: o.cacheDir}
		}
		// The import needs a user with access to the content generator: the
		// --cg-* login, or by default a second session of the host's own.
		login := o.cg
		if login.User == "" && login.Cert == "" && login.Principal == "" {
			login = o.conn
		}
		osb.Local = &kojid.LocalConfig{StateDir: filepath.Join(o.stateDir, "osbuild"), Builder: composeBuilder, Distros: cat,
			CG: o.cgName, Log: log.With("component", "osbuild-local"),
			Connect: func(ctx context.Context) (*koji.Client, error) {
				return login.connect(ctx, io.Discard, koji.DefaultUploadChunkSize, 4)
			}}
	}
	osbuild, err := kojid.NewOSBuildImage(osb)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := osbuild.Close(ctx); err != nil {
			log.Error("stopping the local compose service", "err", err)
		}
	}
	c, err := o.conn.connect(ctx, stderr, koji.DefaultUploadChunkSize, 4)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	var imageBuilder kojid.Builder = &kojid.EngineBuilder{
		Store: st, CacheDir: o.cacheDir, Definitions: o.definitions, DefaultDistro: o.distro}
	if b := testKojidBuilder(); b != nil {
		imageBuilder = b
	}
	d := &kojid.Daemon{
		Hub: c,
		Handlers: map[string]kojid.Handler{
			"imageBuilderBuild":     kojid.ImageBuilderBuild{TopDir: o.topDir},
			"imageBuilderBuildArch": kojid.ImageBuilderBuildArch{Builder: imageBuilder},
			"osbuildImage":          osbuild,
			"tagBuild":              kojid.TagBuild{},
		},
		Log:      log,
		WorkDir:  o.workDir,
		Interval: o.interval,
		WaitPoll: o.waitPoll,
		MaxJobs:  o.maxJobs,
		MinSpace: minSpace,
		MaxLoad:  maxLoad,
	}
	return d, closeFn, nil
}
