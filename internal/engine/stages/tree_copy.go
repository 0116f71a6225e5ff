package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kib-project/kib/internal/sparse"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("tree-copy", func(o *stageopt.TreeCopy) Stage { return (*TreeCopy)(o) })
}

// TreeCopy is the tree-copy stage; its options are stageopt.TreeCopy.
type TreeCopy stageopt.TreeCopy

// Run copies the tree.
func (t *TreeCopy) Run(ctx context.Context, env *Env) error {
	src, err := env.Input(t.Source)
	if err != nil {
		return fmt.Errorf("tree-copy: source: %w", err)
	}
	if env.Tree == "" {
		return errors.New("tree-copy: this stage must run in a tree pipeline (env.Tree is empty)")
	}
	start := time.Now()
	reason, err := linkTree(env, src)
	if err != nil {
		return fmt.Errorf("tree-copy: %w", err)
	}
	if reason == "" {
		logger(env).Info("tree-copy: overlay mounted, the tree is made real at the pipeline's end", "source", t.Source,
			"duration", time.Since(start).Round(time.Millisecond))
		return nil
	}
	logger(env).Info("tree-copy: copying", "why", reason)
	st, err := CopyTree(ctx, src, env.Tree, 0)
	if err != nil {
		return fmt.Errorf("tree-copy: %w", err)
	}
	logger(env).Info("tree-copy: copied", "source", t.Source, "entries", st.Entries, "bytes", st.Bytes,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// InputNames returns the tree the stage copies.
func (t *TreeCopy) InputNames() []string { return (*stageopt.TreeCopy)(t).InputNames() }

// CopyStats counts what CopyTree copied.
type CopyStats struct {
	Entries int64
	Bytes   int64
}

// CopyTree copies the directory tree src into the existing, empty directory
// dst (whose own metadata becomes src's) with workers parallel copiers; 0
// means twice the number of CPUs, at most 8. See TreeCopy for what is kept.
func CopyTree(ctx context.Context, src, dst string, workers int) (CopyStats, error) {
	if workers <= 0 {
		workers = min(2*runtime.NumCPU(), 8)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &treeCopier{src: src, dst: dst, links: map[fileID]string{}}
	jobs := make(chan copyJob, 256)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := c.copyEntry(j); err != nil {
					c.fail(err)
					cancel()
				}
			}
		}()
	}
	walkErr := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		c.entries++
		if d.IsDir() {
			if rel != "." {
				if err := os.Mkdir(filepath.Join(dst, rel), 0o700); err != nil {
					return err
				}
			}
			c.dirs = append(c.dirs, copyJob{rel: rel, st: st})
			return nil
		}
		if st.Nlink > 1 {
			id := fileID{st.Dev, st.Ino}
			if first, ok := c.links[id]; ok {
				c.hardlinks = append(c.hardlinks, [2]string{first, rel})
				return nil
			}
			c.links[id] = rel
		}
		jobs <- copyJob{rel: rel, st: st}
		return nil
	})
	close(jobs)
	wg.Wait()
	if walkErr != nil && !errors.Is(walkErr, context.Canceled) {
		return c.stats(), walkErr
	}
	if err := c.err(); err != nil {
		return c.stats(), err
	}
	if err := ctx.Err(); err != nil {
		return c.stats(), err
	}
	for _, l := range c.hardlinks {
		if err := os.Link(filepath.Join(dst, l[0]), filepath.Join(dst, l[1])); err != nil {
			return c.stats(), err
		}
	}
	// Directories last, deepest first: creating their entries changed their
	// times, and a read-only directory could not have been filled.
	for _, d := range slices.Backward(c.dirs) {
		if err := c.setMeta(d.rel, d.st); err != nil {
			return c.stats(), err
		}
	}
	return c.stats(), nil
}

type fileID struct{ dev, ino uint64 }

type copyJob struct {
	rel string
	st  *syscall.Stat_t
}

type treeCopier struct {
	src, dst  string
	entries   int64 // written by the walker only
	links     map[fileID]string
	hardlinks [][2]string
	dirs      []copyJob

	mu    sync.Mutex
	bytes int64
	first error
}

func (c *treeCopier) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == nil {
		c.first = err
	}
}

func (c *treeCopier) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

func (c *treeCopier) stats() CopyStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CopyStats{Entries: c.entries, Bytes: c.bytes}
}

// copyEntry makes the non-directory entry rel in dst and sets its metadata.
func (c *treeCopier) copyEntry(j copyJob) error {
	from, to := filepath.Join(c.src, j.rel), filepath.Join(c.dst, j.rel)
	switch j.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n, err := copyFileData(from, to, j.st)
		if err != nil {
			return fmt.Errorf("copying %s: %w", j.rel, err)
		}
		c.mu.Lock()
		c.bytes += n
		c.mu.Unlock()
	case unix.S_IFLNK:
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, to); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(to, j.st.Mode&(unix.S_IFMT|0o777), int(j.st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", j.rel, err)
		}
	default:
		return fmt.Errorf("%s: unsupported file type %#o", j.rel, j.st.Mode&unix.S_IFMT)
	}
	return c.setMeta(j.rel, j.st)
}

// setMeta gives dst's rel src's owner, extended attributes, mode and times.
func (c *treeCopier) setMeta(rel string, st *syscall.Stat_t) error {
	xattrs, err := readXattrs(filepath.Join(c.src, rel))
	if err != nil {
		return fmt.Errorf("extended attributes of %s: %w", rel, err)
	}
	if err := applyMeta(filepath.Join(c.dst, rel), st, xattrs); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// applyMeta gives p (not followed if a symbolic link) the owner, mode and
// times of st and the extended attributes xattrs, in that order: a change
// of owner clears set-id bits and file capabilities.
func applyMeta(p string, st *syscall.Stat_t, xattrs [][2]string) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	for _, x := range xattrs {
		if err := unix.Lsetxattr(p, x[0], []byte(x[1]), 0); err != nil {
			return fmt.Errorf("extended attribute %s: %w", x[0], err)
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times: %w", err)
	}
	return nil
}

// readXattrs returns p's extended attributes, in name order, without
// following a symbolic link.
func readXattrs(p string) ([][2]string, error) {
	names, err := xattrNames(p)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for _, name := range names {
		val, err := getXattr(p, name)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{name, string(val)})
	}
	return out, nil
}

// xattrNames returns the names of p's extended attributes, sorted, without
// following a symbolic link; none where the file system has none.
func xattrNames(p string) ([]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	// On an overlay, the size asked first may count attributes the list
	// then leaves out: no empty names.
	names := strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 })
	slices.Sort(names)
	return names, nil
}

// getXattr returns the value of p's extended attribute name.
func getXattr(p, name string) ([]byte, error) {
	vsize, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	val := make([]byte, vsize)
	vn, err := unix.Lgetxattr(p, name, val)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return val[:vn], nil
}

// copyFileData creates to with from's content, keeping holes when from has
// any, and returns the number of data bytes copied.
func copyFileData(from, to string, st *syscall.Stat_t) (int64, error) {
	// O_NOATIME: reading the store's tree does not change it.
	in, err := os.OpenFile(from, os.O_RDONLY|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		in, err = os.Open(from)
	}
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	size := st.Size
	var copied int64
	if st.Blocks*512 < size {
		// Fewer blocks than bytes: sparse. Copy the data extents only.
		ext, err := sparse.Data(in, size)
		if err != nil {
			return 0, err
		}
		for _, e := range ext {
			if err := sparse.CopyRange(out, in, e.Start, e.End-e.Start); err != nil {
				return copied, err
			}
			copied += e.End - e.Start
		}
		if err := out.Truncate(size); err != nil {
			return copied, err
		}
	} else if size > 0 {
		if err := sparse.CopyRange(out, in, 0, size); err != nil {
			return copied, err
		}
		copied = size
	}
	return copied, out.Close()
}
