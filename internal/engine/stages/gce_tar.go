package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kib-project/kib/internal/hostcmd"
)

func init() { register[GCETar]("gce-tar") }

// GCETar checks its options when the manifest is decoded.
var _ validator = (*GCETar)(nil)

// GCETar packs a raw disk as Google Compute Engine wants it: a gzipped tar
// holding one file, disk.raw, in GNU tar's oldgnu format with sparse
// entries. Holes are found by reading the data (--hole-detection=raw), not
// from the file system, and the entry's time, owner and mode are fixed, so
// the archive is the same on every build. GNU tar stores a file as sparse
// only when it uses fewer blocks than its size, which disk images made by
// kib's stages always do (they are never written with zeros). The gzip
// stream is compressed on every core in blocks of 1 MiB (see parallelGzip);
// its bytes do not depend on the number of cores.
type GCETar struct {
	Conversion
	// Level is the gzip level, 1 to 9; 0 means 6.
	Level int `json:"level,omitempty"`
}

// Validate checks the options.
func (o *GCETar) Validate() error {
	if err := o.Conversion.validate(); err != nil {
		return err
	}
	if o.Level < 0 || o.Level > 9 {
		return optErr("level", "must be 1 to 9 (0 for the default 6), got %d", o.Level)
	}
	return nil
}

// Run writes the archive.
func (o *GCETar) Run(ctx context.Context, env *Env) error {
	in, err := o.inputPath(env)
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
