package stages

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// editTree changes a tree the ways a pipeline's stages and their tools do:
// new files, files replaced by rename, files written in place (one with
// hard links), a mode, an attribute, removals, a removed and recreated
// directory, a rename, a new hard link; then it sets the times of what it
// touched, as a stage normalizing times would.
func editTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	appendTo := func(rel, data string) {
		f, err := os.OpenFile(p(rel), os.O_WRONLY|os.O_APPEND, 0)
		must(err)
		_, err = f.WriteString(data)
		must(err)
		must(f.Close())
	}
	must(writeTreeFile(root, "/etc/hostname", []byte("kib\n"), 0o644))
	must(writeTreeFile(root, "/etc/shadow", []byte("root:$6$x:1::::::\n"), 0o640))
	appendTo("usr/bin/tool010", "more")
	// Written in place under one name, the file changes under both.
	appendTo("usr/bin/pair-a", "# changed in place, under both names")
	// Written in place under one name, then that name replaced: the
	// other two names keep the change.
	appendTo("etc/perl-link", "# changed in place, under all three names")
	must(unix.UtimesNanoAt(unix.AT_FDCWD, p("etc/perl-link"), []unix.Timespec{{Sec: 1630000000}, {Sec: 1630000001}}, 0))
	must(writeTreeFile(root, "/etc/perl-link", []byte("replaced"), 0o644))
	must(os.Chmod(p("usr/bin/tool020"), 0o700))
	must(os.Chown(p("usr/bin/tool021"), 5, 6))
	must(unix.Lsetxattr(p("usr/bin/tool022"), "user.new", []byte("v"), 0))
	must(os.Remove(p("usr/bin/tool030")))
	must(os.Chmod(p("var/lib/empty"), 0o755))
	must(os.RemoveAll(p("var/lib/empty")))
	must(os.Mkdir(p("var/lib/empty"), 0o750))
	must(os.WriteFile(p("var/lib/empty/other"), []byte("new"), 0o600))
	must(os.Rename(p("usr/bin/tool040"), p("usr/bin/renamed")))
	must(os.MkdirAll(p("etc/new.d/sub"), 0o755))
	must(os.Symlink("../hostname", p("etc/new.d/link")))
	must(os.Link(p("etc/hostname"), p("etc/new.d/hostname")))
	must(unix.Mkfifo(p("etc/new.d/fifo"), 0o600))
	must(os.Remove(p("usr/bin/perl-sym")))
	must(os.Symlink("perl", p("usr/bin/perl-sym")))
	// A tool, in place.
	if out, err := exec.Command("sh", "-c", `echo x >> "$1"`, "sh", p("usr/bin/tool050")).CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	for i, rel := range []string{
		"etc/hostname", "etc/shadow", "usr/bin/tool010", "etc/perl-link", "usr/bin/pair-b", "usr/bin/tool050",
		"var/lib/empty/other", "etc/new.d/fifo", "etc/new.d/link", "usr/bin/perl-sym", "etc/new.d/sub", "etc/new.d", "var/lib/empty", "var/lib", "usr/bin", "etc",
	} {
		ts := []unix.Timespec{{Sec: 1650000000 + int64(i), Nsec: 7}, {Sec: 1640000000 + int64(i), Nsec: 9}}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p(rel), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

func TestTreeLink(t *testing.T) {
	base := linkTestDir(t)
	src := filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	makeTestTree(t, src)
	before := treeListing(t, src)
	build := func(name string, link bool) (tree string, log string) {
		if !link {
			t.Setenv("KIB_TREE_LINK", "off")
		}
		tree = filepath.Join(base, name, "tree")
		scratch := filepath.Join(base, name, "scratch")
		for _, d := range []string{tree, scratch} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var buf strings.Builder
		env := &Env{Tree: tree, Scratch: scratch, Inputs: map[string]string{"packages": src},
			Log: slog.New(slog.NewTextHandler(&buf, nil)), ToolLog: io.Discard}
		if err := (&TreeCopy{Source: "packages"}).Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		editTree(t, tree)
		if err := env.End(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		t.Setenv("KIB_TREE_LINK", "")
		return tree, buf.String()
	}
	copied, clog := build("copy", false)
	linked, llog := build("link", true)
	if !strings.Contains(clog, "KIB_TREE_LINK=off") {
		t.Errorf("KIB_TREE_LINK=off did not copy: %s", clog)
	}
	if !strings.Contains(llog, "overlay made real") {
		t.Fatalf("the tree was not linked: %s", llog)
	}
	diffListings(t, treeListing(t, linked), treeListing(t, copied), "linked", "copied")
	if after := treeListing(t, src); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the source changed:\n%s", strings.Join(after, "\n"))
	}
	// The files no stage wrote are the source's; the tree is no mount.
	var a, b unix.Stat_t
	if err := unix.Stat(filepath.Join(src, "usr/bin/tool011"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(linked, "usr/bin/tool011"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino {
		t.Error("usr/bin/tool011 is not a link to the source's")
	}
	if mounted(t, linked) {
		t.Error("the overlay is still mounted")
	}
}

// TestTreeLinkFailed checks that a failed pipeline's overlay is unmounted
// and the source untouched.
func TestTreeLinkFailed(t *testing.T) {
	base := linkTestDir(t)
	src, tree, scratch := filepath.Join(base, "src"), filepath.Join(base, "tree"), filepath.Join(base, "scratch")
	for _, d := range []string{src, tree, scratch} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("source"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := &Env{Tree: tree, Scratch: scratch, Inputs: map[string]string{"packages": src}, Log: slog.New(slog.DiscardHandler)}
	if err := (&TreeCopy{Source: "packages"}).Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if !mounted(t, tree) {
		t.Fatal("no overlay mounted")
	}
	if err := os.WriteFile(filepath.Join(tree, "f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := env.End(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if mounted(t, tree) {
		t.Error("the overlay is still mounted after the failure")
	}
	if data, _ := os.ReadFile(filepath.Join(src, "f")); string(data) != "source" {
		t.Errorf("the source's file holds %q", data)
	}
}

// mounted tells whether dir is a mount point.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// linkTestDir returns a new directory for a tree link test, removed
// after it. Not under /tmp, which may be a tmpfs: the source and the tree
// share a disk file system, as in a store. The tests need root
// (overlayfs, owners, device nodes).
func linkTestDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the tree link tests need root (overlayfs, owners, device nodes)")
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "kib-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(filepath.Join(dir, "kib-test"), "treelink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return base
}
