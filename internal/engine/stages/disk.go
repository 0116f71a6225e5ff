package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Sizes used by the disk stages, from their options' package.
const (
	SectorSize = stageopt.SectorSize
	MiB        = stageopt.MiB
	gptTrailer = stageopt.GPTTrailer
)

// diskPath returns the path of an existing disk file filename in env.Out and
// checks that the byte range [offset, offset+size) lies inside it.
func diskPath(env *Env, filename string, offset, size uint64) (string, error) {
	if env.Out == "" {
		return "", errors.New("this stage must run in a file pipeline (env.Out is empty)")
	}
	p := filepath.Join(env.Out, filename)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("disk file %s (written by an earlier gpt stage): %w", filename, err)
	}
	if uint64(fi.Size()) < offset+size {
		return "", fmt.Errorf("disk file %s is %d bytes, too small for %d bytes at offset %d", filename, fi.Size(), size, offset)
	}
	return p, nil
}

// inPlace modifies the file path under a temporary name: it renames path to
// a hidden ".partial" name in the same directory, runs fn on that name, and
// renames it back when fn succeeds. When fn fails (or the build is killed)
// nothing is left under path; a failed file is removed.
func inPlace(path string, fn func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial")
	if err := os.Rename(path, tmp); err != nil {
		return err
	}
	if err := fn(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// createAtomic creates the file name in dir by running fn on a new temporary
// file in dir, then renaming it to name. When fn fails the temporary file is
// removed, so no partial file is ever visible under name.
func createAtomic(dir, name string, fn func(tmp *os.File) error) (err error) {
	if dir == "" {
		return errors.New("this stage must run in a file pipeline (env.Out is empty)")
	}
	f, err := os.CreateTemp(dir, "."+name+".*.partial")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fn(f); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// inputFile resolves a file of an earlier pipeline (input) or, with input
// empty, of this pipeline's output directory.
func inputFile(env *Env, input, filename string) (string, error) {
	dir := env.Out
	if input != "" {
		var err error
		if dir, err = env.Input(input); err != nil {
			return "", err
		}
	}
	p := filepath.Join(dir, filename)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("input file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("input file %s is not a regular file", p)
	}
	return p, nil
}

// treePath resolves the absolute path p inside the tree root, following
// symbolic links as the booted system would (absolute links are relative to
// root). It fails if the result does not exist or leaves the tree.
func treePath(root, p string) (string, error) {
	cur := "/"
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts...)
	}
	return filepath.Join(root, cur), nil
}

// run runs a host tool with the stage's base environment, logging its
// stderr to env.ToolLog.
func run(ctx context.Context, env *Env, c hostcmd.Cmd) ([]byte, error) {
	c.Env = append(env.BaseEnv(), c.Env...)
	if c.Log == nil {
		c.Log = env.ToolLog
	}
	return env.exec(ctx, c)
}

func logger(env *Env) *slog.Logger {
	if env.Log != nil {
		return env.Log
	}
	return slog.New(slog.DiscardHandler)
}

// writeScratch writes data to name in the stage's scratch directory
// (env.Work, which the engine creates per pipeline).
func writeScratch(env *Env, name string, data []byte) (string, error) {
	dir := env.Work
	if dir == "" {
		return "", errors.New("env.Work (scratch directory) is not set")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", err
	}
	return p, nil
}
