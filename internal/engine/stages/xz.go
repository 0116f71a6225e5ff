package stages

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("xz", func(o *stageopt.XZ) Stage { return (*XZ)(o) })
}

// XZ is the xz stage; its options are stageopt.XZ.
type XZ stageopt.XZ

// Run compresses the file.
func (o *XZ) Run(ctx context.Context, env *Env) error {
	in, err := inputFile(env, o.Input, o.InputFilename)
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	level, block := o.Level, o.BlockSize
	if level == 0 {
		level = 6
	}
	if block == 0 {
		block = 24 * MiB
	}
	logger(env).Info("xz: compressing", "input", o.InputFilename, "output", o.Filename, "level", level)
	return createAtomic(env.Out, o.Filename, func(f *os.File) error {
		_, err := run(ctx, env, hostcmd.Cmd{Path: "xz", Stdout: f, Args: []string{
			"--compress", "--stdout", "--keep", fmt.Sprintf("-%d", level),
			fmt.Sprintf("--threads=+%d", runtime.NumCPU()), fmt.Sprintf("--block-size=%d", block), in}})
		if err != nil {
			return fmt.Errorf("xz: %w", err)
		}
		return f.Sync()
	})
}
