package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/progress"
	"github.com/kib-project/kib/internal/store"
)

type buildOptions struct {
	request   requestOptions
	manifest  string
	exports   []string
	outputDir string
	store     string
	verbose   bool
}

func newBuildCmd() *cobra.Command {
	var o buildOptions
	cmd := &cobra.Command{
		Use:   "build [flags] (TYPE | --manifest FILE) --output-dir DIR",
		Short: "Build an image: resolve a manifest for TYPE, or execute a given one",
		Long: `Build an image. With TYPE, resolve a pinned manifest (as 'kib manifest') and
execute it. With --manifest, execute that manifest exactly: nothing is
resolved anew. Each export lands in DIR/<export>/<file>, with
<file>.manifest.json, <file>.image-os.spdx.json and build-info.json beside it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	o.request.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&o.manifest, "manifest", "", "execute this manifest file instead of resolving TYPE")
	f.StringArrayVar(&o.exports, "export", nil, "export to produce (repeatable; default: all)")
	f.StringVar(&o.outputDir, "output-dir", "", "directory for the results (required)")
	f.StringVar(&o.store, "store", filepath.Join(defaultCacheDir(), "store"), "store directory: cached sources and pipeline outputs")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "show the host tools' output")
	return cmd
}

func (o *buildOptions) run(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	switch {
	case o.outputDir == "":
		return errors.New("--output-dir: required")
	case o.manifest != "" && len(args) > 0:
		return errors.New("give either TYPE or --manifest, not both")
	case o.manifest == "" && len(args) == 0:
		return errors.New("give an image TYPE or --manifest FILE")
	}
	if err := requireRoot("kib build"); err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	run := newEngineRun(stderr, o.verbose)
	log, toolLog := run.log, run.toolLog

	var m *manifest.Manifest
	var err error
	if o.manifest != "" {
		f, err := os.Open(o.manifest)
		if err != nil {
			return fmt.Errorf("--manifest: %w", err)
		}
		m, err = manifest.Parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--manifest %s: %w", o.manifest, err)
		}
	} else {
		log.Info("resolving", "type", args[0], "distro", o.request.distro, "arch", o.request.arch)
		m, err = o.request.manifest(ctx, cmd, args[0], toolLog)
		if err != nil {
			return err
		}
	}
	st, err := store.Open(o.store)
	if err != nil {
		return err
	}
	eng := run.engine(st)
	arts, err := eng.Build(ctx, m, engine.Options{OutputDir: o.outputDir, Exports: o.exports})
	run.stop()
	if err != nil {
		return err
	}
	for _, a := range arts {
		fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", a.SHA256, a.Path)
	}
	return nil
}

// requireRoot refuses to build without root: mmdebstrap installs packages in
// root mode and the image's files belong to root.
func requireRoot(what string) error {
	if os.Geteuid() != 0 {
		return errors.New(what + " must run as root: mmdebstrap installs packages in root mode and the image's files belong to root")
	}
	return nil
}

// engineRun is how kib build and kib reproduce run the engine: slog on
// stderr (warnings only while a progress bar is drawn on a terminal), the
// host tools' output with --verbose, and a progress bar on a terminal.
type engineRun struct {
	log     *slog.Logger
	toolLog io.Writer
	stderr  io.Writer
	tty     bool
	bar     *progress.Bar
}

func newEngineRun(stderr io.Writer, verbose bool) *engineRun {
	tty := isTerminal(stderr)
	r := &engineRun{toolLog: io.Discard, stderr: stderr, tty: tty}
	if verbose {
		r.toolLog = stderr
	}
	level := slog.LevelInfo
	if tty && !verbose {
		level = slog.LevelWarn
	}
	r.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return r
}

// progress starts the bar on a terminal and returns it; nil otherwise.
func (r *engineRun) progress() engine.Progress {
	if !r.tty {
		return nil
	}
	if r.bar == nil {
		r.bar = progress.NewBar(r.stderr)
	}
	return r.bar
}

// engine returns an engine on st that logs and reports progress as r says.
func (r *engineRun) engine(st *store.Store) *engine.Engine {
	return &engine.Engine{Store: st, Log: r.log, ToolLog: r.toolLog, Progress: r.progress()}
}

// stop ends the progress bar's line; it may be called more than once.
func (r *engineRun) stop() {
	if r.bar != nil {
		r.bar.Stop()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
