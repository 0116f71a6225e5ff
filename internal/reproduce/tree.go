package reproduce

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/kib-project/kib/internal/hostcmd"
)

// dumpFS copies the file tree of the file system fsType that starts at
// byte start of disk into dest: ext4 with debugfs rdump, vfat with mtools'
// mcopy, both keeping modes, owners (ext4) and times.
func dumpFS(ctx context.Context, fsType, disk string, start int64, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	var c hostcmd.Cmd
	switch fsType {
	case "ext4":
		c = hostcmd.Cmd{Path: "debugfs", Args: []string{"-R", "rdump / " + dest, fmt.Sprintf("%s?offset=%d", disk, start)}}
	case "vfat":
		c = hostcmd.Cmd{Path: "mcopy", Args: []string{"-s", "-p", "-m", "-n", "-Q", "-i", disk + "@@" + strconv.FormatInt(start, 10), "::", dest + "/"},
			Env: []string{"MTOOLS_SKIP_CHECK=1"}}
	default:
		return fmt.Errorf("file system %q: cannot list its files", fsType)
	}
	if _, err := hostcmd.Run(ctx, c); err != nil {
		return fmt.Errorf("reading the %s file system: %w", fsType, err)
	}
	return nil
}

// CompareTrees walks two directory trees side by side in lexical order and
// returns the first entry (as "/path") that is only in one, or differs in
// type, mode, owner, size, link target or content; nil if none does.
func CompareTrees(a, b string) (*Difference, error) {
	la, err := listTree(a)
	if err != nil {
		return nil, err
	}
	lb, err := listTree(b)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(la) || i < len(lb); i++ {
		switch {
		case i >= len(la):
			return &Difference{Entry: lb[i], Detail: "only in the reproduced image"}, nil
		case i >= len(lb):
			return &Difference{Entry: la[i], Detail: "only in the Koji image"}, nil
		case la[i] < lb[i]:
			return &Difference{Entry: la[i], Detail: "only in the Koji image"}, nil
		case la[i] > lb[i]:
			return &Difference{Entry: lb[i], Detail: "only in the reproduced image"}, nil
		}
		if d, err := compareEntry(filepath.Join(a, la[i]), filepath.Join(b, lb[i])); err != nil || d != "" {
			return &Difference{Entry: la[i], Detail: d}, err
		}
	}
	return nil, nil
}

// listTree returns the entries below root as "/rel/path", in walk order.
func listTree(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, "/"+filepath.ToSlash(rel))
		return nil
	})
	return out, err
}

func compareEntry(a, b string) (string, error) {
	sa, err := os.Lstat(a)
	if err != nil {
		return "", err
	}
	sb, err := os.Lstat(b)
	if err != nil {
		return "", err
	}
	if sa.Mode() != sb.Mode() {
		return fmt.Sprintf("mode %v in Koji, %v reproduced", sa.Mode(), sb.Mode()), nil
	}
	if xa, ok := sa.Sys().(*syscall.Stat_t); ok {
		xb := sb.Sys().(*syscall.Stat_t)
		if xa.Uid != xb.Uid || xa.Gid != xb.Gid {
			return fmt.Sprintf("owner %d:%d in Koji, %d:%d reproduced", xa.Uid, xa.Gid, xb.Uid, xb.Gid), nil
		}
	}
	switch {
	case sa.Mode()&fs.ModeSymlink != 0:
		ta, _ := os.Readlink(a)
		tb, _ := os.Readlink(b)
		if ta != tb {
			return fmt.Sprintf("link target %q in Koji, %q reproduced", ta, tb), nil
		}
	case sa.Mode().IsRegular():
		if sa.Size() != sb.Size() {
			return fmt.Sprintf("size %d in Koji, %d reproduced", sa.Size(), sb.Size()), nil
		}
		d, err := compareFiles(a, b, func(ra, rb io.Reader) (*Difference, error) {
			off, same, err := compareStreams(ra, rb)
			if err != nil || same {
				return nil, err
			}
			return &Difference{Detail: fmt.Sprintf("content differs from byte %d", off)}, nil
		})
		if err != nil {
			return "", err
		}
		if d != nil {
			return d.Detail, nil
		}
	}
	// Directories' times are set by the dump itself; others are compared.
	if !sa.IsDir() && !sa.ModTime().Equal(sb.ModTime()) {
		return fmt.Sprintf("mtime %v in Koji, %v reproduced", sa.ModTime().UTC(), sb.ModTime().UTC()), nil
	}
	return "", nil
}
