package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/reproduce"
	"github.com/kib-project/kib/internal/store"
)

// Exit codes of kib reproduce.
const (
	exitIdentical       = 0
	exitDiffers         = 1
	exitError           = 2
	exitVersionMismatch = 3
	exitHubMismatch     = 4
)

// exitError ends kib with a chosen exit code; main prints err unless it is
// nil (the verdict is already on stdout).
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitCodeError) Unwrap() error { return e.err }

// ExitCode is the process exit code.
func (e *exitCodeError) ExitCode() int { return e.code }

type reproduceOptions struct {
	conn      kojiConnOptions
	topURL    string
	image     string
	outputDir string
	store     string
	cached    bool
	force     bool
}

func newReproduceCmd() *cobra.Command {
	o := &reproduceOptions{}
	cmd := &cobra.Command{
		Use:   "reproduce --server URL [flags] NVR|BUILD-ID",
		Short: "Rebuild an image of a Koji build from its manifest and compare it with the image in Koji",
		Long: `Rebuild an image of a Koji build from the kib manifest stored beside it,
and compare the result with the image in Koji.

The build's image and its <image>.manifest.json are found with getBuild and
listArchives, and downloaded from the hub's file root (--topurl), checked
against their archive records. An image built by another kib version is
refused (exit 3) unless --force. Every pipeline runs again (only the pinned
sources, verified by sha256, come from the store) unless --cached.

Prints "identical <sha256> <file>", or "differs <file>" followed by both
checksums and the first difference: the first differing entry of a tar
image, or for disk images the partition, byte offset and, on ext4, the file.

Exit codes: 0 identical, 1 differs, 2 usage or other error, 3 built by
another kib version (refused without --force), 4 a file on the hub does not
match its archive record. --verbose logs the hub calls and shows the host
tools' output.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &exitCodeError{exitError, fmt.Errorf("give one build: its NVR (name-version-release) or build ID, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitCodeError{exitError, err}
	})
	f := cmd.Flags()
	o.conn.bind(f)
	f.StringVar(&o.topURL, "topurl", "", "the hub's file root (Koji's topurl; default: the --server URL with /kojihub replaced by /kojifiles)")
	f.StringVar(&o.image, "image", "", "the image to rebuild, for builds with several: its Koji file name, export name or export file name")
	f.StringVar(&o.outputDir, "output-dir", "", "directory for the rebuilt image (and the Koji image when they differ) (default: ./reproduce-<build>)")
	f.StringVar(&o.store, "store", filepath.Join(defaultCacheDir(), "store"), "store directory: its verified sources are reused")
	f.BoolVar(&o.cached, "cached", false, "take pipeline outputs the store already holds instead of running every pipeline (faster; proves less)")
	f.BoolVar(&o.force, "force", false, "rebuild even when the image was built by another kib version (with a warning)")
	return cmd
}

// topURL returns --topurl or the hub's conventional file root.
func (o *reproduceOptions) topURLOrDefault() (string, error) {
	if o.topURL != "" {
		return o.topURL, nil
	}
	base, ok := strings.CutSuffix(strings.TrimRight(o.conn.Server, "/"), "/kojihub")
	if !ok {
		return "", fmt.Errorf("--topurl: required when --server %q does not end in /kojihub", o.conn.Server)
	}
	return base + "/kojifiles", nil
}

func (o *reproduceOptions) run(cmd *cobra.Command, build string) error {
	err := o.reproduce(cmd.Context(), cmd, build)
	var ec *exitCodeError
	var ve *reproduce.VersionError
	var ce *reproduce.ChecksumError
	switch {
	case err == nil, errors.As(err, &ec):
		return err
	case errors.As(err, &ve):
		return &exitCodeError{exitVersionMismatch, err}
	case errors.As(err, &ce):
		return &exitCodeError{exitHubMismatch, err}
	}
	return &exitCodeError{exitError, err}
}

func (o *reproduceOptions) reproduce(ctx context.Context, cmd *cobra.Command, build string) (err error) {
	if err := o.conn.validate(); err != nil {
		return err
	}
	top, err := o.topURLOrDefault()
	if err != nil {
		return err
	}
	if _, err := reproduce.BuildRef(build); err != nil {
		return err
	}
	if o.outputDir == "" {
		o.outputDir = "reproduce-" + build
	}
	if err := requireRoot("kib reproduce"); err != nil {
		return err
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	st, err := store.Open(o.store)
	if err != nil {
		return err
	}
	if !o.cached {
		fresh, done, err := reproduce.FreshStore(st)
		if err != nil {
			return err
		}
		defer done()
		st = fresh
	}
	c, err := o.conn.connect(ctx, stderr, 0, 0)
	if err != nil {
		return err
	}
	defer func() {
		if c.LoggedIn() {
			_ = c.Logout(context.WithoutCancel(ctx))
		}
	}()
	run := newEngineRun(stderr, o.conn.Verbose)
	defer run.stop()
	r := &reproduce.Reproducer{Hub: c, TopURL: top, Builder: run.engine(st), Log: run.log, Progress: run.progress()}
	res, err := r.Run(ctx, reproduce.Options{Build: build, Image: o.image, OutputDir: o.outputDir, Force: o.force})
	run.stop()
	if err != nil {
		return err
	}
	if res.Warning != nil {
		fmt.Fprintln(stderr, "kib: warning:", res.Warning)
	}
	return report(stdout, res)
}

// report prints the verdict and returns the exit code's error.
func report(w io.Writer, res *reproduce.Result) error {
	name := res.Target.Image.Filename
	if res.Identical {
		fmt.Fprintf(w, "identical %s %s\n", res.KojiChecksum, name)
		return nil
	}
	fmt.Fprintf(w, "differs %s\n", name)
	fmt.Fprintf(w, "  koji:       %s %s\n", res.KojiChecksum, res.KojiPath)
	fmt.Fprintf(w, "  reproduced: %s %s\n", res.Artifact.SHA256, res.Artifact.Path)
	fmt.Fprintf(w, "  first difference: %s\n", res.Difference)
	return &exitCodeError{code: exitDiffers}
}
