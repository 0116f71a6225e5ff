package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Sizes used by the disk stages.
const (
	SectorSize = 512
	MiB        = 1 << 20
	// gptTrailer is the space the backup GPT takes at the end of a disk
	// (128 entries of 128 bytes plus the header sector).
	gptTrailer = 33 * SectorSize
)

// Partition type GUIDs for the layouts kib builds.
const (
	GPTTypeBIOSBoot    = "21686148-6449-6E6F-744E-656564454649"
	GPTTypeESP         = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GPTTypeRootX86_64  = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	GPTTypeLinuxData   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GPTTypeLinuxBootXB = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
)

// OptionError reports a stage option that breaks a rule. Field is the option's
// JSON path (for example "partitions[1].start").
type OptionError struct {
	Field string
	Rule  string
}

func (e *OptionError) Error() string { return e.Field + ": " + e.Rule }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Rule: fmt.Sprintf(format, args...)}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func checkUUID(field, v string) error {
	if !uuidRE.MatchString(v) {
		return optErr(field, "must be a UUID like 01234567-89ab-cdef-0123-456789abcdef, got %q", v)
	}
	return nil
}

// checkFilename accepts a plain file name: no directories, no dot files, no
// control characters.
func checkFilename(field, v string) error {
	if v == "" {
		return optErr(field, "is required")
	}
	if strings.ContainsAny(v, "/\x00") || v == "." || v == ".." || strings.HasPrefix(v, ".") {
		return optErr(field, "must be a plain file name without '/' that does not start with '.', got %q", v)
	}
	return nil
}

func checkPipelineName(field, v string, required bool) error {
	if v == "" {
		if required {
			return optErr(field, "is required")
		}
		return nil
	}
	if strings.ContainsAny(v, "/\x00") {
		return optErr(field, "must be a pipeline name, got %q", v)
	}
	return nil
}

// checkExtent checks a partition given by byte offset and size.
func checkExtent(prefix string, offset, size, align uint64) error {
	if offset == 0 || offset%align != 0 {
		return optErr(prefix+"offset", "must be a positive multiple of %d, got %d", align, offset)
	}
	if size == 0 || size%align != 0 {
		return optErr(prefix+"size", "must be a positive multiple of %d, got %d", align, size)
	}
	return nil
}

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

// Extent is a byte range of a disk.
type Extent struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
}

// LayoutPartitions places partitions of the given sizes (bytes) one after
// another on a disk of diskSize bytes, the first at 1 MiB, each start aligned
// to 1 MiB. A size of 0, allowed only for the last partition, takes the rest
// of the disk up to the backup GPT, rounded down to 1 MiB.
func LayoutPartitions(diskSize uint64, sizes []uint64) ([]Extent, error) {
	if diskSize < 2*MiB || diskSize%MiB != 0 {
		return nil, optErr("size", "must be a multiple of 1 MiB and at least 2 MiB, got %d", diskSize)
	}
	out := make([]Extent, len(sizes))
	pos := uint64(MiB)
	for i, sz := range sizes {
		if sz == 0 {
			if i != len(sizes)-1 {
				return nil, optErr(fmt.Sprintf("sizes[%d]", i), "only the last partition may fill the disk (size 0)")
			}
			end := (diskSize - gptTrailer) / MiB * MiB
			if end <= pos {
				return nil, optErr("size", "disk of %d bytes has no room left for partition %d", diskSize, i)
			}
			sz = end - pos
		}
		if pos+sz > diskSize-gptTrailer {
			return nil, optErr("size", "disk of %d bytes is too small: partition %d ends at byte %d", diskSize, i, pos+sz)
		}
		out[i] = Extent{Start: pos, Size: sz}
		pos = (pos + sz + MiB - 1) / MiB * MiB
	}
	return out, nil
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
