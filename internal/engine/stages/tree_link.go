package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A tree-copy whose source is a store object on the same file system as
// the tree does not copy the files. It mounts an overlay on the tree, with
// the source read-only below: the pipeline's stages, and every tool they run,
// see and change the copy, while whatever they write, even in place, lands
// in the overlay's upper directory and never in the source. When the stages
// are done, the overlay is unmounted and the tree made real: each directory
// anew with the merged view's metadata, each file the stages wrote moved
// from the upper directory, and every other file a hard link to the
// source's. The tree then holds what CopyTree would have made, file for
// file (link counts aside, which no image records), without writing the
// source's data again: under the write-back of an earlier build, copying
// 660 MB took 7.5 s, linking it a fraction of that.
//
// Renaming a directory that comes from the source fails with EXDEV in the
// overlay (redirect_dir=off keeps the upper directory plain), which mv and
// usermod -m meet by copying; kib's stages rename files only. A mount that
// a build root started meanwhile by another build copied into its own
// namespace stays there unused until that build root's tool exits.
//
// It falls back to CopyTree where an overlay cannot be mounted (no
// privilege, a store on a file system overlayfs refuses as upper) and
// with KIB_TREE_LINK=off.

// overlayXattrPrefix is the prefix of overlayfs's own extended attributes,
// which it may set in the upper directory and which must not reach a tree.
const overlayXattrPrefix = "trusted.overlay."

// linkTree mounts the overlay of src on env.Tree and registers its
// materialization at the pipeline's end. It reports why it did not when it
// did not (the caller copies instead).
func linkTree(env *Env, src string) (reason string, err error) {
	if os.Getenv("KIB_TREE_LINK") == "off" {
		return "KIB_TREE_LINK=off", nil
	}
	if env.Scratch == "" {
		return "no pipeline scratch directory", nil
	}
	// Links to the source and moves from the upper directory need one
	// file system.
	var s1, s2, s3 unix.Stat_t
	for p, st := range map[string]*unix.Stat_t{src: &s1, env.Scratch: &s2, env.Tree: &s3} {
		if err := unix.Stat(p, st); err != nil {
			return "", err
		}
	}
	if s1.Dev != s2.Dev || s2.Dev != s3.Dev {
		return "the source, the tree and the scratch directory are not on one file system", nil
	}
	if ents, err := os.ReadDir(env.Tree); err != nil {
		return "", err
	} else if len(ents) > 0 {
		return "the tree is not empty", nil
	}
	ovl := filepath.Join(env.Scratch, "overlay")
	upper, work := filepath.Join(ovl, "upper"), filepath.Join(ovl, "work")
	for _, d := range []string{ovl, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	for _, p := range []string{src, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Sprintf("the path %q has a character overlayfs options cannot carry", p), nil
		}
	}
	// The overlay's root is the upper directory's: it starts as the
	// source's root, as a copy's would.
	var rst syscall.Stat_t
	if err := syscall.Lstat(src, &rst); err != nil {
		return "", err
	}
	if err := (&treeCopier{src: src, dst: upper}).setMeta(".", &rst, true); err != nil {
		return "", err
	}
	// index=on: a file with hard links that a stage writes in place is
	// copied up once for all its names, as in a copy, where they all see
	// the change.
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,metacopy=off,index=on,xino=off", src, upper, work)
	if err := unix.Mount("kib-tree", env.Tree, "overlay", 0, opts); err != nil {
		os.RemoveAll(ovl)
		return fmt.Sprintf("mounting an overlay: %v", err), nil
	}
	// The kernel turns the index off, with a line in its log only, where
	// the upper file system lacks trusted.* attributes or file handles;
	// it makes work/index when the index is on.
	if _, err := os.Stat(filepath.Join(work, "index")); err != nil {
		if err := unmountTree(env.Tree, false); err != nil {
			return "", err
		}
		os.RemoveAll(ovl)
		return "overlayfs turned its index off (no trusted.* attributes or file handles here)", nil
	}
	env.AtEnd(func(ctx context.Context, failed bool) error {
		if failed {
			return unmountTree(env.Tree, true)
		}
		return materialize(ctx, logger(env), env.Tree, src, upper)
	})
	return "", nil
}

// unmountTree unmounts the overlay on tree. When a process still holds it,
// it is detached, and that is an error unless detach (the tree is thrown
// away): a tree made real from an overlay still in use could change.
func unmountTree(tree string, detach bool) error {
	err := unix.Unmount(tree, 0)
	if err == nil {
		return nil
	}
	if err2 := unix.Unmount(tree, unix.MNT_DETACH); err2 != nil || !detach {
		return fmt.Errorf("unmounting the overlay on %s: %w", tree, err)
	}
	return nil
}

// linkEntry is an entry of the merged tree: directories keep their
// metadata, read through the overlay, for after the unmount.
type linkEntry struct {
	rel    string
	dir    bool
	st     unix.Stat_t
	xattrs [][2]string
}

// materialize reads the merged tree mounted on tree, unmounts it and
// builds it in tree from upper (what the stages wrote) and lower (the rest,
// hard-linked).
func materialize(ctx context.Context, log *slog.Logger, tree, lower, upper string) error {
	start := time.Now()
	var ents []linkEntry
	walkErr := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		e := linkEntry{rel: rel, dir: d.IsDir()}
		if err := unix.Lstat(p, &e.st); err != nil {
			return err
		}
		if e.dir {
			if e.xattrs, err = readXattrs(p); err != nil {
				return fmt.Errorf("extended attributes of %s: %w", rel, err)
			}
		} else if e.st.Mode&unix.S_IFMT == unix.S_IFREG {
			if err := linkUp(p, filepath.Join(upper, rel), filepath.Join(lower, rel), &e.st); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		ents = append(ents, e)
		return nil
	})
	if err := unmountTree(tree, walkErr != nil); err != nil {
		return err
	}
	if walkErr != nil {
		return fmt.Errorf("reading the overlay: %w", walkErr)
	}
	walked := time.Since(start)
	// First the directories and what the stages wrote. The names of one
	// file (one inode in the overlay) share the file the stages wrote, if
	// they wrote it under any name: with index=on, a file with hard links
	// written in place is one new file for all its names, as in a copy.
	var moved int
	written := map[uint64]string{} // overlay inode -> the new file
	fromLower := make([]bool, len(ents))
	for i, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		to := filepath.Join(tree, e.rel)
		if e.dir {
			if e.rel != "." {
				if err := os.Mkdir(to, 0o700); err != nil {
					return err
				}
			}
			continue
		}
		up := filepath.Join(upper, e.rel)
		var st unix.Stat_t
		err := unix.Lstat(up, &st)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		if err != nil || isWhiteout(&st) {
			fromLower[i] = true
			continue
		}
		if first, ok := written[e.st.Ino]; ok && st.Mode&unix.S_IFMT == unix.S_IFREG {
			// Another name of a file already moved.
			if err := os.Link(first, to); err != nil {
				return err
			}
			continue
		}
		if err := os.Rename(up, to); err != nil {
			return err
		}
		if err := dropOverlayXattrs(to); err != nil {
			return fmt.Errorf("extended attributes of %s: %w", e.rel, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			written[e.st.Ino] = to
		}
		moved++
	}
	// Then the rest, from the source.
	var linked int
	c := &treeCopier{src: lower, dst: tree}
	made := map[uint64]string{} // source inode -> the first name made anew
	for i, e := range ents {
		if !fromLower[i] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		from, to := filepath.Join(lower, e.rel), filepath.Join(tree, e.rel)
		var st unix.Stat_t
		if err := unix.Lstat(from, &st); err != nil {
			return fmt.Errorf("%s: in the overlay, but in neither layer: %w", e.rel, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			if nf, ok := written[e.st.Ino]; ok {
				from = nf
			}
			if err := os.Link(from, to); err == nil {
				linked++
				continue
			} else if from != filepath.Join(lower, e.rel) {
				return err
			}
			// The source's file refuses another link (immutable, or at
			// the file system's most links): a copy.
		} else if first, ok := made[e.st.Ino]; ok {
			// Another name of a symbolic link or special file made here.
			if err := os.Link(first, to); err != nil {
				return err
			}
			continue
		}
		// Symbolic links and special files are made anew, as CopyTree
		// makes them, and keep their hard links within the tree.
		if err := c.copyEntry(copyJob{rel: e.rel, st: statT(&st)}); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG && st.Nlink > 1 {
			made[e.st.Ino] = to
		}
	}
	// Directories last, deepest first, as CopyTree sets them.
	for _, e := range slices.Backward(ents) {
		if !e.dir {
			continue
		}
		if err := setDirMeta(filepath.Join(tree, e.rel), &e.st, e.xattrs); err != nil {
			return fmt.Errorf("%s: %w", e.rel, err)
		}
	}
	log.Info("tree-copy: overlay made real", "entries", len(ents), "linked", linked, "written", moved,
		"read", walked.Round(time.Millisecond), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// isWhiteout tells an overlayfs whiteout (a character device 0/0).
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// statT converts a unix.Stat_t into the syscall.Stat_t copyEntry takes.
func statT(st *unix.Stat_t) *syscall.Stat_t {
	return &syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		Mtim: syscall.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		Ctim: syscall.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec},
	}
}

// readXattrs returns p's extended attributes, in name order.
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

// dropOverlayXattrs removes overlayfs's own attributes from p.
func dropOverlayXattrs(p string) error {
	names, err := xattrNames(p)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, overlayXattrPrefix) {
			if err := unix.Lremovexattr(p, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// setDirMeta gives the directory p the owner, extended attributes, mode
// and times of st and xattrs, in setMeta's order.
func setDirMeta(p string, st *unix.Stat_t, xattrs [][2]string) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	for _, x := range xattrs {
		if err := unix.Lsetxattr(p, x[0], []byte(x[1]), 0); err != nil {
			return fmt.Errorf("%s: %w", x[0], err)
		}
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, p, st.Mode&0o7777, 0); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// linkUp makes sure the merged file p, which the upper directory lacks at
// up, is the source's file at low. It is not when another of its names was
// written in place (with index=on, all its names then show the new file)
// and that name later replaced or removed: then a link made and removed
// again in the overlay gives p its name in the upper directory, which the
// materialization moves like any file written.
func linkUp(p, up, low string, merged *unix.Stat_t) error {
	var st unix.Stat_t
	if err := unix.Lstat(up, &st); err == nil {
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := unix.Lstat(low, &st); err != nil {
		return fmt.Errorf("in the overlay, but in neither layer: %w", err)
	}
	if st.Ino == merged.Ino && st.Ctim == merged.Ctim && st.Size == merged.Size && st.Mtim == merged.Mtim {
		return nil
	}
	tmp := p + ".kib-link-up"
	if err := os.Link(p, tmp); err != nil {
		return fmt.Errorf("linking up: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	if err := unix.Lstat(up, &st); err != nil {
		return fmt.Errorf("linking up: the upper directory still lacks it: %w", err)
	}
	return nil
}
