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
	if os.Geteuid() != 0 {
		return errors.New("kib build must run as root: mmdebstrap installs packages in root mode and the image's files belong to root")
	}
	stderr := cmd.ErrOrStderr()
	tty := isTerminal(stderr)
	var toolLog io.Writer = io.Discard
	if o.verbose {
		toolLog = stderr
	}
	level := slog.LevelInfo
	if tty && !o.verbose {
		level = slog.LevelWarn
	}
	log := slog.New(redact.Handler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))

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
	eng := &engine.Engine{Store: st, Log: log, ToolLog: toolLog}
	var bar *progress.Bar
	if tty {
		bar = progress.NewBar(stderr)
		eng.Progress = bar
	}
	arts, err := eng.Build(ctx, m, engine.Options{OutputDir: o.outputDir, Exports: o.exports})
	if bar != nil {
		bar.Stop()
	}
	if err != nil {
		return err
	}
	for _, a := range arts {
		fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", a.SHA256, a.Path)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
