package stages

import (
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"

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
// kib's stages always do (they are never written with zeros).
type GCETar struct {
	// Input names the pipeline holding InputFilename; empty means this
	// pipeline's output directory.
	Input         string `json:"input,omitempty"`
	InputFilename string `json:"input_filename"`
	// Filename is the archive to write in the output directory.
	Filename string `json:"filename"`
	// Level is the gzip level, 1 to 9; 0 means 6.
	Level int `json:"level,omitempty"`
}

// Validate checks the options.
func (o *GCETar) Validate() error {
	if err := checkPipelineName("input", o.Input, false); err != nil {
		return err
	}
	if err := checkFilename("input_filename", o.InputFilename); err != nil {
		return err
	}
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if o.Input == "" && o.InputFilename == o.Filename {
		return optErr("filename", "must differ from input_filename when both are in this pipeline")
	}
	if o.Level < 0 || o.Level > 9 {
		return optErr("level", "must be 1 to 9 (0 for the default 6), got %d", o.Level)
	}
	return nil
}

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
		zw, err := gzip.NewWriterLevel(f, level)
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
