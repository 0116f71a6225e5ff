package stages

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestScriptWords(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   []string
	}{
		{"copy_exec /sbin/fsck.${type}\n", []string{"copy_exec", "sbin", "fsck.*"}},
		{"# copy_exec /sbin/commented\n  # indented comment\n", nil},
		{`if command -v "$compress" >/dev/null; then`, []string{"if", "command", "-v", "dev", "null", "then"}},
		{"for x in $list ${other}; do", []string{"for", "x", "in", "do"}},
		{`case "$x" in *[!0-9]*) ;; esac`, []string{"case", "in", `*\[!0-9\]*`, "esac"}},
		{"cp -pL /lib/klibc-*.so $DESTDIR/lib", []string{"cp", "-pL", "lib", "klibc-*.so", "lib"}},
		{"zram*|zd*) x=$1 COMPRESS=zstd", []string{"zram*", "zd*", "x", "COMPRESS", "zstd"}},
	} {
		if got := scriptWords(tc.script); !slices.Equal(got, tc.want) {
			t.Errorf("scriptWords(%q) = %q, want %q", tc.script, got, tc.want)
		}
	}
}

// initramfsTestTree makes a tree with initramfs-tools' hook-functions, a
// mkinitramfs and a hook that name commands, and a kernel with its
// initramfs.
func initramfsTestTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	files := map[string]string{
		hookFunctionsPath:                         "copy_exec() { :; }\n# cryptsetup only in a comment\n",
		"/usr/sbin/mkinitramfs":                   "command -v zstd\nfor x in /etc/modprobe.d/*.conf; do :; done\n",
		"/usr/share/initramfs-tools/hooks/fsck":   "copy_exec /sbin/fsck.${type}\ncopy_exec /sbin/logsave\n",
		"/etc/initramfs-tools/hooks/local":        "[ -x /usr/sbin/mdadm ] && copy_exec /usr/sbin/mdadm\n",
		"/etc/initramfs-tools/initramfs.conf":     "COMPRESS=zstd\n",
		"/lib/modules/6.1.0-1-amd64/modules.dep":  "",
		"/boot/vmlinuz-6.1.0-1-amd64":             "kernel",
		"/boot/initrd.img-6.1.0-1-amd64":          "initramfs",
		"/usr/share/initramfs-tools/scripts/init": "mount -t proc proc /proc\n",
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func TestInitramfsInput(t *testing.T) {
	tree := initramfsTestTree(t)
	in, why, err := readInitramfsInputs(tree)
	if err != nil || why != "" {
		t.Fatalf("readInitramfsInputs: %q, %v", why, err)
	}
	for _, tc := range []struct {
		path string
		want string // a part of the reason; "" for none
	}{
		{"/usr/bin/tree", ""},
		{"/usr/share/doc/tree/copyright", ""},
		{"/usr/share/man/man1/tree.1.gz", ""},
		{"/usr/lib/python3/dist-packages/tree.py", ""},
		{"/usr/sbin/cryptsetup", ""}, // named only in a comment
		{"/opt/tool/bin/zstd", ""},   // not in PATH's directories
		{"/etc/tree.conf", "under /etc"},
		{"/boot/config-6.1.0-1-amd64", "under /boot"},
		{"/usr/share/initramfs-tools/hooks/new", "under /usr/share/initramfs-tools"},
		{"/lib/firmware/new.bin", "under /lib/firmware"},
		{"/usr/lib/firmware/new.bin", "under /usr/lib/firmware"},
		{"/usr/lib/modules/6.1.0-1-amd64/extra/new.ko", "under /usr/lib/modules"},
		{"/usr/lib/udev/rules.d/64-new.rules", "under /usr/lib/udev"},
		{"/usr/lib/x86_64-linux-gnu/libnew.so.1", "shared library"},
		{"/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libc.so.6", "shared library"},
		{"/usr/lib/x86_64-linux-gnu/newfile", "library directory"},
		{"/usr/lib64/ld-new", "library directory"},
		{"/usr/lib/newfile", "library directory"},
		{"/usr/bin/zstd", `name ("zstd")`},
		{"/sbin/fsck.vfat", `name ("fsck.*")`},
		{"/usr/sbin/fsck.btrfs", `name ("fsck.*")`},
		{"/usr/sbin/mdadm", `name ("mdadm")`},
		{"/usr/bin/logsave", `name ("logsave")`},
		{"/usr/bin/copy_file", `name ("copy_file")`}, // kib's hook-functions names it
	} {
		got := in.input(tc.path)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("input(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := in.changedBy([]string{"/usr/bin/tree", "/usr/share/doc/tree", "/usr/bin/zstd"}); !strings.HasPrefix(got, "/usr/bin/zstd ") {
		t.Errorf("changedBy = %q, want the first input, /usr/bin/zstd", got)
	}
}

func TestInitramfsRebuild(t *testing.T) {
	added := []string{"/usr/bin/tree", "/usr/share/doc/tree/copyright"}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, tree string)
		added []string
		want  string // a part of the reason; "" to keep the initramfs
	}{
		{"nothing the build reads", func(*testing.T, string) {}, added, ""},
		{"an input", func(*testing.T, string) {}, append(added, "/usr/lib/firmware/x.bin"), "/usr/lib/firmware/x.bin is under"},
		{"environment", func(t *testing.T, _ string) { t.Setenv("KIB_GROW_INITRAMFS", "rebuild") }, added, "KIB_GROW_INITRAMFS=rebuild"},
		{"no hook-functions", func(t *testing.T, tree string) {
			os.Remove(filepath.Join(tree, hookFunctionsPath))
		}, added, "no initramfs-tools hook-functions"},
		{"no initramfs", func(t *testing.T, tree string) {
			os.Remove(filepath.Join(tree, "boot/initrd.img-6.1.0-1-amd64"))
		}, added, "no initramfs for kernel 6.1.0-1-amd64"},
		{"linked hook", func(t *testing.T, tree string) {
			if err := os.Symlink("/usr/share/hook", filepath.Join(tree, "etc/initramfs-tools/hooks/linked")); err != nil {
				t.Fatal(err)
			}
		}, added, "/etc/initramfs-tools/hooks/linked is a symbolic link"},
		{"large script", func(t *testing.T, tree string) {
			if err := os.WriteFile(filepath.Join(tree, "etc/initramfs-tools/hooks/big"), make([]byte, maxScriptSize+1), 0o644); err != nil {
				t.Fatal(err)
			}
		}, added, "is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := initramfsTestTree(t)
			tc.setup(t, tree)
			got, err := initramfsRebuild(tree, tc.added)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("initramfsRebuild = %q, want %q", got, tc.want)
			}
		})
	}
}
