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
	_, reason, err = linkTreeUndo(env, src)
	return reason, err
}

// linkTreeUndo is linkTree that also returns, when it linked, undo: it
// unmounts the overlay, leaving env.Tree empty, and cancels the
// materialization.
func linkTreeUndo(env *Env, src string) (undo func() error, reason string, err error) {
	if os.Getenv("KIB_TREE_LINK") == "off" {
		return nil, "KIB_TREE_LINK=off", nil
	}
	if env.Scratch == "" {
		return nil, "no pipeline scratch directory", nil
	}
	// Links to the source and moves from the upper directory need one
	// file system.
	var s1, s2, s3 unix.Stat_t
	for p, st := range map[string]*unix.Stat_t{src: &s1, env.Scratch: &s2, env.Tree: &s3} {
		if err := unix.Stat(p, st); err != nil {
			return nil, "", err
		}
	}
	if s1.Dev != s2.Dev || s2.Dev != s3.Dev {
		return nil, "the source, the tree and the scratch directory are not on one file system", nil
	}
	if ents, err := os.ReadDir(env.Tree); err != nil {
		return nil, "", err
	} else if len(ents) > 0 {
		return nil, "the tree is not empty", nil
	}
	ovl := filepath.Join(env.Scratch, "overlay")
	upper, work := filepath.Join(ovl, "upper"), filepath.Join(ovl, "work")
	for _, d := range []string{ovl, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, "", err
		}
	}
	for _, p := range []string{src, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return nil, fmt.Sprintf("the path %q has a character overlayfs options cannot carry", p), nil
		}
	}
	// The overlay's root is the upper directory's: it starts as the
	// source's root, as a copy's would.
	var rst syscall.Stat_t
	if err := syscall.Lstat(src, &rst); err != nil {
		return nil, "", err
	}
	if err := (&treeCopier{src: src, dst: upper}).setMeta(".", &rst); err != nil {
		return nil, "", err
	}
	// index=on: a file with hard links that a stage writes in place is
	// copied up once for all its names, as in a copy, where they all see
	// the change.
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,metacopy=off,index=on,xino=off", src, upper, work)
	if err := unix.Mount("kib-tree", env.Tree, "overlay", 0, opts); err != nil {
		os.RemoveAll(ovl)
		return nil, fmt.Sprintf("mounting an overlay: %v", err), nil
	}
	// The kernel turns the index off, with a line in its log only, where
	// the upper file system lacks trusted.* attributes or file handles;
	// it makes work/index when the index is on.
	if _, err := os.Stat(filepath.Join(work, "index")); err != nil {
		if err := unmountTree(env.Tree, false); err != nil {
			return nil, "", err
		}
		os.RemoveAll(ovl)
		return nil, "overlayfs turned its index off (no trusted.* attributes or file handles here)", nil
	}
	env.AtEnd(func(ctx context.Context, failed bool) error {
		if failed {
			return unmountTree(env.Tree, true)
		}
		return materialize(ctx, logger(env), env.Tree, src, upper)
	})
	return nil, "", nil
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

// linkEntry is an entry of the merged tree, read through the overlay for
// after the unmount: its metadata (for an entry of the source, the
// source's, but for the device), for a directory its extended attributes,
// and whether the upper directory holds it.
type linkEntry struct {
	rel    string
	st     syscall.Stat_t
	xattrs [][2]string
	upper  bool
}

func (e *linkEntry) dir() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }

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
		e := linkEntry{rel: rel}
		if err := syscall.Lstat(p, &e.st); err != nil {
			return err
		}
		if e.dir() {
			if e.xattrs, err = readXattrs(p); err != nil {
				return fmt.Errorf("extended attributes of %s: %w", rel, err)
			}
		} else if e.upper, err = inUpper(p, filepath.Join(upper, rel), filepath.Join(lower, rel), &e.st); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
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
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		to := filepath.Join(tree, e.rel)
		regular := e.st.Mode&unix.S_IFMT == unix.S_IFREG
		switch first, ok := written[e.st.Ino]; {
		case e.dir():
			if e.rel != "." {
				if err := os.Mkdir(to, 0o700); err != nil {
					return err
				}
			}
		case !e.upper:
		case ok && regular:
			// Another name of a file already moved.
			if err := os.Link(first, to); err != nil {
				return err
			}
		default:
			if err := os.Rename(filepath.Join(upper, e.rel), to); err != nil {
				return err
			}
			if err := dropOverlayXattrs(to); err != nil {
				return fmt.Errorf("extended attributes of %s: %w", e.rel, err)
			}
			if regular {
				written[e.st.Ino] = to
			}
			moved++
		}
	}
	// Then the rest, from the source.
	var linked int
	c := &treeCopier{src: lower, dst: tree}
	made := map[uint64]string{} // source inode -> the first name made anew
	for _, e := range ents {
		if e.dir() || e.upper {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		from, to := filepath.Join(lower, e.rel), filepath.Join(tree, e.rel)
		if e.st.Mode&unix.S_IFMT == unix.S_IFREG {
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
		if err := c.copyEntry(copyJob{rel: e.rel, st: &e.st}); err != nil {
			return err
		}
		if e.st.Mode&unix.S_IFMT != unix.S_IFREG && e.st.Nlink > 1 {
			made[e.st.Ino] = to
		}
	}
	// Directories last, deepest first, as CopyTree sets them.
	for _, e := range slices.Backward(ents) {
		if !e.dir() {
			continue
		}
		if err := applyMeta(filepath.Join(tree, e.rel), &e.st, e.xattrs); err != nil {
			return fmt.Errorf("%s: %w", e.rel, err)
		}
	}
	log.Info("tree-copy: overlay made real", "entries", len(ents), "linked", linked, "written", moved,
		"read", walked.Round(time.Millisecond), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// isWhiteout tells an overlayfs whiteout (a character device 0/0).
func isWhiteout(st *syscall.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
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

// inUpper tells whether the upper directory holds the merged non-directory
// p (at up). A regular file it lacks must be the source's file at low. It
// is not when another of its names was written in place (with index=on,
// all its names then show the new file) and that name later replaced or
// removed: then a link made and removed again in the overlay gives p its
// name in the upper directory, which the materialization moves like any
// file written.
func inUpper(p, up, low string, merged *syscall.Stat_t) (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(up, &st); err == nil {
		return !isWhiteout(&st), nil
	} else if !errors.Is(err, unix.ENOENT) {
		return false, err
	}
	if merged.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	if err := syscall.Lstat(low, &st); err != nil {
		return false, fmt.Errorf("in the overlay, but in neither layer: %w", err)
	}
	if st.Ino == merged.Ino && st.Ctim == merged.Ctim && st.Size == merged.Size && st.Mtim == merged.Mtim {
		return false, nil
	}
	tmp := p + ".kib-link-up"
	if err := os.Link(p, tmp); err != nil {
		return false, fmt.Errorf("linking up: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return false, err
	}
	if err := syscall.Lstat(up, &st); err != nil {
		return false, fmt.Errorf("linking up: the upper directory still lacks it: %w", err)
	}
	return true, nil
}
