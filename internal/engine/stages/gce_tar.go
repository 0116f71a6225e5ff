package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("gce-tar", func(o *stageopt.GCETar) Stage { return (*GCETar)(o) })
}

// GCETar is the gce-tar stage; its options are stageopt.GCETar.
type GCETar stageopt.GCETar

// Run writes the archive.
func (o *GCETar) Run(ctx context.Context, env *Env) error {
	in, err := inputFile(env, o.Input, o.InputFilename)
	if err != nil {
		return fmt.Errorf("gce-tar: %w", err)
	}
	level := o.Level
	if level == 0 {
		level = 6
	}
	logger(env).Info("gce-tar: packing disk.raw", "input", o.InputFilename, "output", o.Filename)
	return createAtomic(env.Out, o.Filename, func(f *os.File) error {
		zw, err := newParallelGzip(f, level, runtime.NumCPU())
		if err != nil {
			return fmt.Errorf("gce-tar: %w", err)
		}
		_, err = run(ctx, env, hostcmd.Cmd{Path: "tar", Stdout: zw, Args: []string{
			"--create", "--file=-", "--format=oldgnu", "--sparse", "--hole-detection=raw",
			fmt.Sprintf("--mtime=@%d", env.SourceDateEpoch), "--owner=0", "--group=0", "--numeric-owner",
			"--mode=0644", "--transform=s,^.*$,disk.raw,",
			"-C", filepath.Dir(in), filepath.Base(in)}})
		if err != nil {
			return fmt.Errorf("gce-tar: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gce-tar: %w", err)
		}
		return f.Sync()
	})
}
