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
		names  []string
		paths  []string
	}{
		{"copy_exec /sbin/fsck.${type}\n", []string{"copy_exec", "sbin", "fsck.*"}, []string{"/sbin/fsck.*"}},
		{"# copy_exec /sbin/commented\n  # indented comment\n", nil, nil},
		{`if command -v "$compress" >/dev/null; then`, []string{"if", "command", "-v", "dev", "null", "then"}, []string{"/dev/null"}},
		{"for x in $list ${other}; do", []string{"for", "x", "in", "do"}, nil},
		{`case "$x" in *[!0-9]*) ;; esac`, []string{"case", "in", `*\[!0-9\]*`, "esac"}, nil},
		{"cp -pL /lib/klibc-*.so $DESTDIR/lib", []string{"cp", "-pL", "lib", "klibc-*.so", "lib"}, []string{"/lib/klibc-*.so"}},
		{"zram*|zd*) x=$1 COMPRESS=zstd", []string{"zram*", "zd*", "x", "COMPRESS", "zstd"}, nil},
		{"PATH=/usr/bin:/sbin:/bin", []string{"PATH", "usr", "bin", "sbin", "bin"}, []string{"/usr/bin", "/sbin", "/bin"}},
		{"for t in /usr/share/plymouth/themes/${THEME}/; do", []string{"for", "t", "in", "usr", "share", "plymouth", "themes", "do"}, []string{"/usr/share/plymouth/themes/*"}},
	} {
		names, paths := scriptWords(tc.script)
		if !slices.Equal(names, tc.names) || !slices.Equal(paths, tc.paths) {
			t.Errorf("scriptWords(%q) = %q, %q; want %q, %q", tc.script, names, paths, tc.names, tc.paths)
		}
	}
}

func TestScriptPathCovers(t *testing.T) {
	for _, tc := range []struct {
		pat, p string
		want   bool
	}{
		{"/usr/share/plymouth/themes/*", "/usr/share/plymouth/themes/new/new.plymouth", true},
		{"/usr/share/plymouth/themes/*", "/usr/share/plymouth/other", false},
		{"/usr/share/hook-data", "/usr/share/hook-data/new", true},
		{"/usr/share/hook-data", "/usr/share/hook-data/new/deeper", false},
		{"/usr/share/hook-data", "/usr/share/hook-data", true},
		{"/usr/share/hook-data", "/usr/share/hook-data2", false},
		{"/usr/share/x/fonts-*.psf", "/usr/share/x/fonts-new.psf", true},
		{"/usr/share/x/fonts-*.psf", "/usr/share/x/fonts-new.psf.gz", false},
		{"/usr/share/x/fonts-*/y", "/usr/share/x/fonts-new/y/z", true},
		{"/*", "/usr/bin/tree", false},
		{"/usr*", "/usr/share/doc/tree", false},
		{"/lib*", "/lib/new", false},
		{"/usr/bin", "/usr/bin/tree", false},
		{"/usr/lib", "/usr/lib/new", false},
		{"/", "/new", false},
	} {
		if got := scriptPathCovers(tc.pat, tc.p); got != tc.want {
			t.Errorf("scriptPathCovers(%q, %q) = %v, want %v", tc.pat, tc.p, got, tc.want)
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
		"/usr/share/initramfs-tools/hooks/theme":  "for f in /usr/share/plymouth/themes/$THEME/*; do copy_file theme \"$f\"; done\n[ -r /usr/share/hook-data/list ]\n",
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
		{"/usr/share/plymouth/themes/new/new.plymouth", `path the initramfs scripts name ("/usr/share/plymouth/themes/*/*")`},
		{"/usr/share/hook-data/list", `path the initramfs scripts name ("/usr/share/hook-data/list")`},
		{"/usr/share/hook-data/other", ""},
		{"/usr/share/plymouth/other", ""},
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
