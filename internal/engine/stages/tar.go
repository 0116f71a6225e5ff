package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Tar is the tar stage; its options are stageopt.Tar.
type Tar stageopt.Tar

func init() {
	register("tar", func(o *stageopt.Tar) Stage { return (*Tar)(o) })
}

// Run writes env.Out/Filename.
func (t *Tar) Run(ctx context.Context, env *Env) error {
	src, err := env.Input(t.Source)
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(env.Out, t.Filename))
	if err != nil {
		return err
	}
	defer out.Close()
	if t.Compression == "none" {
		if err := TarTree(ctx, env, src, t.Exclude, out); err != nil {
			return err
		}
		return out.Close()
	}
	if err := env.check("xz"); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var xzErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pr.Close()
		// -T0 always uses the multi-threaded compressor in xz >= 5.4, whose
		// output depends on the block size, not on the number of threads.
		_, xzErr = env.exec(ctx, hostcmd.Cmd{Path: "xz", Args: []string{"-T0", "-" + strconv.Itoa(t.Level), "-c"}, Stdin: pr, Stdout: out, Log: env.ToolLog})
		if xzErr != nil {
			cancel()
		}
	}()
	tarErr := TarTree(ctx, env, src, t.Exclude, pw)
	pw.Close()
	wg.Wait()
	if err := errors.Join(tarErr, xzErr); err != nil {
		return err
	}
	return out.Close()
}

// TarTree writes a reproducible tar of dir to w with GNU tar.
func TarTree(ctx context.Context, env *Env, dir string, exclude []string, w io.Writer) error {
	args := []string{"--create", "--file=-", "--directory=" + dir,
		"--sort=name", "--numeric-owner", "--format=pax",
		fmt.Sprintf("--mtime=@%d", env.SourceDateEpoch), "--clamp-mtime",
		"--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
		"--xattrs", "--xattrs-include=*", "--anchored"}
	for _, e := range exclude {
		args = append(args, "--exclude="+e)
	}
	args = append(args, ".")
	_, err := env.exec(ctx, hostcmd.Cmd{Path: "tar", Args: args, Stdout: w, Env: env.BaseEnv(), Log: env.ToolLog})
	if err != nil {
		return fmt.Errorf("archiving %s: %w", dir, err)
	}
	return nil
}

// Tools lists the host tools the stage runs.
func (t *Tar) Tools() []string {
	if t.Compression == "xz" {
		return []string{"tar", "xz"}
	}
	return []string{"tar"}
}
