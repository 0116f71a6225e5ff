package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/progress"
	"github.com/kib-project/kib/internal/redact"
	"github.com/kib-project/kib/internal/store"
)

type buildOptions struct {
	request   requestOptions
	manifest  string
	exports   []string
	outputDir string
	store     string
	verbose   bool
	upload    uploadOptions
}

func newBuildCmd() *cobra.Command {
	var o buildOptions
	cmd := &cobra.Command{
		Use:   "build [flags] (TYPE | --manifest FILE) --output-dir DIR",
		Short: "Build an image: resolve a manifest for TYPE, or execute a given one",
		Long: `Build an image. With TYPE, resolve a pinned manifest (as 'kib manifest') and
execute it. With --manifest, execute that manifest exactly: nothing is
resolved anew. Each export lands in DIR/<export>/<file>, with
<file>.manifest.json, <file>.image-os.spdx.json, <file>.build.log and
build-info.json beside it.`,
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
	f.StringVar(&o.upload.options, "upload-options", "", "after the build, upload the image with these upload_options (JSON file; see kib upload)")
	f.StringVar(&o.upload.target, "upload-target", "", "upload target for --upload-options (default: the image type's)")
	f.StringVar(&o.upload.config, "config", defaultConfigPath(), "TOML configuration file with [upload.<target>] tables, for --upload-options")
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
	if o.upload.options != "" {
		// Fail before building when the upload cannot happen.
		if _, err := os.Stat(o.upload.options); err != nil {
			return fmt.Errorf("--upload-options: %w", err)
		}
		settings, err := readUploadSettings(o.upload.config)
		if err != nil {
			return err
		}
		ups, err := settings.uploaders()
		if err != nil {
			return err
		}
		if o.upload.target != "" {
			if _, err := ups.For(o.upload.target); err != nil {
				return fmt.Errorf("--upload-target: %w", err)
			}
		}
	}
	if err := requireRoot("kib build"); err != nil {
		return err
	}
	limitBuildMemory()
	run := newEngineRun(cmd.ErrOrStderr(), o.verbose)
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
		o.request.storeDir = o.store
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
		if err := os.WriteFile(a.Path+".build.log", run.buildLog.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the build log: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", a.SHA256, a.Path)
	}
	if o.upload.options != "" {
		return o.upload.afterBuild(cmd, arts)
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
	// buildLog holds kib's log at info level and the host tools' output:
	// kib build writes it beside every image as <file>.build.log, which
	// 'kib koji import' uploads as the build's log.
	buildLog *lockedBuffer
	stderr   io.Writer
	tty      bool
	bar      *progress.Bar
}

func newEngineRun(stderr io.Writer, verbose bool) *engineRun {
	tty := isTerminal(stderr)
	r := &engineRun{stderr: stderr, tty: tty, buildLog: &lockedBuffer{}}
	r.toolLog = r.buildLog
	if verbose {
		r.toolLog = io.MultiWriter(stderr, r.buildLog)
	}
	level := slog.LevelInfo
	if tty && !verbose {
		level = slog.LevelWarn
	}
	r.log = slog.New(redact.Handler(teeHandler{
		slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}),
		slog.NewTextHandler(r.buildLog, &slog.HandlerOptions{Level: slog.LevelInfo}),
	}))
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

// lockedBuffer is a log buffer the engine's tools may write concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of what was written.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// teeHandler sends every record to each handler that is enabled for it.
type teeHandler []slog.Handler

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
