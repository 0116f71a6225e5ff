package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// makeTestTree builds a tree with every kind of entry a Debian root holds.
func makeTestTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string, mode os.FileMode) {
		must(os.MkdirAll(filepath.Join(root, p), 0o755))
		must(os.Chmod(filepath.Join(root, p), mode))
	}
	write := func(p string, data []byte, mode os.FileMode) {
		must(os.WriteFile(filepath.Join(root, p), data, 0o600))
		must(os.Chmod(filepath.Join(root, p), mode))
	}
	mkdir("usr/bin", 0o755)
	mkdir("etc/ssl/private", 0o700)
	mkdir("var/lib/empty", 0o755)
	for i := range 300 { // more than the workers' queue
		write(fmt.Sprintf("usr/bin/tool%03d", i), bytes.Repeat([]byte{byte(i)}, i*37), 0o755)
	}
	write("usr/bin/su", []byte("setuid"), 0o4755)
	must(os.Chown(filepath.Join(root, "usr/bin/su"), 0, 0))
	write("usr/bin/ping", []byte("capable"), 0o755)
	// security.capability v2 for cap_net_raw; chown would clear it.
	must(unix.Lsetxattr(filepath.Join(root, "usr/bin/ping"), "security.capability",
		[]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
	must(unix.Lsetxattr(filepath.Join(root, "usr/bin/ping"), "user.kib", []byte("x"), 0))
	write("etc/ssl/private/key", []byte("secret"), 0o640)
	must(os.Chown(filepath.Join(root, "etc/ssl/private/key"), 0, 123))
	must(os.Chown(filepath.Join(root, "etc/ssl/private"), 0, 123))
	write("etc/shadow", []byte("root:*:1::::::\n"), 0o640)
	must(os.Chown(filepath.Join(root, "etc/shadow"), 1001, 42))
	// Hard links, across directories.
	write("usr/bin/perl5.36", []byte("#!perl"), 0o755)
	must(os.Link(filepath.Join(root, "usr/bin/perl5.36"), filepath.Join(root, "usr/bin/perl")))
	must(os.Link(filepath.Join(root, "usr/bin/perl5.36"), filepath.Join(root, "etc/perl-link")))
	write("usr/bin/pair-a", []byte("pair"), 0o755)
	must(os.Link(filepath.Join(root, "usr/bin/pair-a"), filepath.Join(root, "usr/bin/pair-b")))
	// A sparse file: 8 MiB with 4 KiB of data in the middle.
	f, err := os.Create(filepath.Join(root, "var/lib/sparse"))
	must(err)
	must(f.Truncate(8 << 20))
	_, err = f.WriteAt(bytes.Repeat([]byte{9}, 4096), 4<<20)
	must(err)
	must(f.Close())
	must(os.Symlink("perl5.36", filepath.Join(root, "usr/bin/perl-sym")))
	must(os.Symlink("/nonexistent", filepath.Join(root, "etc/dangling")))
	must(os.Lchown(filepath.Join(root, "etc/dangling"), 7, 8))
	must(unix.Mkfifo(filepath.Join(root, "var/lib/fifo"), 0o600))
	must(unix.Mknod(filepath.Join(root, "var/lib/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
	// A read-only directory with a file in it.
	write("var/lib/empty/file", []byte("ro"), 0o444)
	must(os.Chmod(filepath.Join(root, "var/lib/empty"), 0o555))
	// Times with nanoseconds, on everything (symlinks too), directories last.
	var paths []string
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		at := time.Unix(1700000000+int64(i), 123456789)
		mt := time.Unix(1600000000+int64(i), 987654321)
		ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// treeListing describes every entry of root: type, mode, owner, size,
// blocks used (rounded to 64 KiB), times, xattrs, content digest, link
// target, device number, and which entries share an inode.
func treeListing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d blocks64k=%d mtime=%d rdev=%d",
			rel, st.Mode, st.Uid, st.Gid, st.Size, (st.Blocks*512+65535)/65536, st.Mtim.Nano(), st.Rdev)
		if fi.Mode().IsRegular() { // listing a directory or reading a link changes its atime
			line += fmt.Sprintf(" atime=%d", st.Atim.Nano())
		}
		if !d.IsDir() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				line += " hardlink=" + first
			} else {
				inodes[st.Ino] = rel
			}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOATIME, 0)
			if err != nil {
				return err
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " sha256=" + hex.EncodeToString(sum[:8])
		}
		if size, _ := unix.Llistxattr(p, nil); size > 0 {
			buf := make([]byte, size)
			n, _ := unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				v := make([]byte, 256)
				vn, _ := unix.Lgetxattr(p, name, v)
				line += fmt.Sprintf(" xattr:%s=%x", name, v[:vn])
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the tree copy test needs root (owners, device nodes, security.* attributes)")
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	makeTestTree(t, src)
	// The root's own metadata is copied too.
	os.Chmod(src, 0o750)
	os.Chown(src, 0, 5)
	unix.UtimesNanoAt(unix.AT_FDCWD, src, []unix.Timespec{{Sec: 1500000000, Nsec: 1}, {Sec: 1500000000, Nsec: 2}}, 0)
	want := treeListing(t, src)
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			st, err := CopyTree(context.Background(), src, dst, workers)
			if err != nil {
				t.Fatal(err)
			}
			got := treeListing(t, dst)
			diffListings(t, got, want, "got", "want")
			if st.Entries != int64(len(want)) {
				t.Errorf("copied %d entries, the tree has %d", st.Entries, len(want))
			}
		})
	}
}

func TestCopyTreeCancel(t *testing.T) {
	src := t.TempDir()
	for i := range 50 {
		os.WriteFile(filepath.Join(src, fmt.Sprint(i)), []byte("x"), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CopyTree(ctx, src, t.TempDir(), 2); err == nil {
		t.Fatal("a cancelled copy reported success")
	}
}

func TestTreeCopyOptions(t *testing.T) {
	for _, tt := range []struct{ opts, want string }{
		{`{}`, "source"},
		{`{"source":"a/b"}`, "source"},
		{`{"source":"packages","extra":1}`, "unknown field"},
	} {
		if _, err := New("tree-copy", []byte(tt.opts)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tree-copy %s: error %v, want one naming %q", tt.opts, err, tt.want)
		}
	}
	s, err := New("tree-copy", []byte(`{"source":"packages"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.(InputReader).InputNames(); len(got) != 1 || got[0] != "packages" {
		t.Errorf("inputs %v", got)
	}
}

// diffListings reports each entry where the tree listings got and want
// (named gotName and wantName) differ.
func diffListings(t *testing.T, got, want []string, gotName, wantName string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("entry %d:\n%8s %s\n%8s %s", i, gotName, g, wantName, w)
		}
	}
}
