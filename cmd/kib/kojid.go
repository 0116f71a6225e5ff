package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojid"
	"github.com/kib-project/kib/internal/store"
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
}

func newKojidCmd() *cobra.Command {
	var o kojidOptions
	cmd := &cobra.Command{
		Use:   "kojid --server URL (--cert FILE | --principal P --keytab FILE)",
		Short: "Run Koji image build tasks as a Koji build host",
		Long: `Log in to a Koji hub as a build host and run the tasks the hub assigns to it,
as kojid does: imageBuilderBuild (from the unchanged koji-image-builder hub
plugin), its imageBuilderBuildArch subtasks, built here with kib's engine,
and tagBuild. The host must be enrolled on the hub (koji add-host) and be in
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
	st, err := store.Open(filepath.Join(o.stateDir, "store"))
	if err != nil {
		return err
	}
	c, err := o.conn.connect(ctx, cmd.ErrOrStderr(), koji.DefaultUploadChunkSize, 4)
	if err != nil {
		return err
	}
	d := &kojid.Daemon{
		Hub: c,
		Handlers: map[string]kojid.Handler{
			"imageBuilderBuild": kojid.ImageBuilderBuild{TopDir: o.topDir},
			"imageBuilderBuildArch": kojid.ImageBuilderBuildArch{Builder: &kojid.EngineBuilder{
				Store: st, CacheDir: o.cacheDir, Definitions: o.definitions, DefaultDistro: o.distro}},
			"tagBuild": kojid.TagBuild{},
		},
		Log:      log,
		WorkDir:  o.workDir,
		Interval: o.interval,
		WaitPoll: o.waitPoll,
		MaxJobs:  o.maxJobs,
		MinSpace: minSpace,
		MaxLoad:  maxLoad,
	}
	return d.Run(ctx)
}
