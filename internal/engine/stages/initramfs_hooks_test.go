package stages

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// upstreamHookFunctions downloads initramfs-tools-core from the host's apt
// sources and returns the path of its hook-functions.
func upstreamHookFunctions(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads initramfs-tools-core from the Debian mirror; run without -short")
	}
	dir := t.TempDir()
	cmd := exec.Command("apt-get", "download", "initramfs-tools-core")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download initramfs-tools-core: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "initramfs-tools-core_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("downloaded %v", debs)
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	hf := filepath.Join(root, hookFunctionsPath)
	data, err := os.ReadFile(hf)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != initramfsHookFunctionsSHA256 {
		// kib then leaves initramfs-tools alone (slower, same image);
		// the override is still checked against the new copy_file.
		t.Logf("%s: the mirror's hook-functions is not the one kib speeds up (sha256 %x): review initramfs_hooks.sh against it",
			filepath.Base(debs[0]), sum)
	}
	return hf
}

// TestHookFunctions runs initramfs-tools' copy_file and kib's, one after the
// other, through the same calls into two empty initramfs trees: they must
// return the same codes and leave the same files, links, modes, times and
// contents. Kib's is run both as mkinitramfs's hooks call it and as
// manual_add_modules does, with the copies put off to one cp at the end.
func TestHookFunctions(t *testing.T) {
	upstream := upstreamHookFunctions(t)
	override := filepath.Join(t.TempDir(), "hook-functions")
	orig, _ := os.ReadFile(upstream)
	if err := os.WriteFile(override, append(orig, hookFunctionsOverride...), 0o644); err != nil {
		t.Fatal(err)
	}

	// Sources under /var/tmp (absolute, like the tree's /usr/lib/modules),
	// with a symlinked directory, a symlinked file, a chain of links and
	// odd names.
	src, err := os.MkdirTemp("/var/tmp", "kib-hookfn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(src) })
	old := time.Unix(1600000000, 0)
	for _, f := range []string{"real/a.ko", "real/sub/b.ko", "real/c d.ko", "real/e.bin", "other/f.ko"} {
		p := filepath.Join(src, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("content of "+f), 0o640)
		os.Chtimes(p, old, old)
	}
	os.Chmod(filepath.Join(src, "real/e.bin"), 0o755)
	os.Symlink("real", filepath.Join(src, "linkdir"))
	os.Symlink("real/a.ko", filepath.Join(src, "link.ko"))
	os.Symlink("link.ko", filepath.Join(src, "chain.ko"))
	os.Symlink("../other", filepath.Join(src, "real/up"))

	calls := [][]string{
		{"module", src + "/real/a.ko"},
		{"module", src + "/real/a.ko"}, // already there: 1
		{"module", src + "/real/sub/b.ko"},
		{"module", src + "/real/c d.ko"},
		{"binary", src + "/real/e.bin", "/bin/e"},           // usr-merged target
		{"binary", src + "/real/e.bin", "/usr/bin/"},        // directory target
		{"binary", src + "/real/e.bin", "/opt//x/./y/../z"}, // not canonical
		{"binary", src + "/real/e.bin", "rel/e"},
		{"module", src + "/linkdir/sub/b.ko"},        // symlinked ancestor
		{"module", src + "/link.ko"},                 // symlink
		{"module", src + "/chain.ko", "/chain/x.ko"}, // chain of links
		{"module", src + "/real/up/f.ko"},            // link to a sibling
		{"module", src + "//real/./sub/../a.ko", "/dots.ko"},
		{"module", src + "/missing.ko"},                // 2
		{"module", src + "/real"},                      // a directory: 2
		{"module", src + "/real/a.ko", "/rel/e/under"}, // parent is a file
		{"binary", "/bin/sh"},                          // the host's usr-merged /bin
		{"binary", "/usr/bin/env", "/sbin/"},
	}
	var script strings.Builder
	script.WriteString(". \"$HF\"\nverbose=n\n")
	for _, c := range calls {
		script.WriteString("copy_file")
		for _, a := range c {
			fmt.Fprintf(&script, " '%s'", a)
		}
		script.WriteString("; echo \"rc $?\"\n")
	}
	run := func(hf, defer_ string) (string, map[string]string) {
		dest := t.TempDir()
		body := script.String()
		if defer_ != "" {
			body = strings.Replace(body, "verbose=n\n", "verbose=n\nkib_copies=\n", 1) + "kib_copy_now; echo \"flush $?\"\n"
		}
		cmd := exec.Command("sh", "-c", body)
		cmd.Dir = src
		cmd.Env = []string{"HF=" + hf, "DESTDIR=" + dest, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return strings.TrimSuffix(string(out), "flush 0\n"), listTree(t, dest)
	}
	wantOut, want := run(upstream, "")
	if !strings.Contains(wantOut, "rc 0\nrc 1\n") || !strings.Contains(wantOut, "rc 2\n") {
		t.Fatalf("upstream copy_file returned:\n%s", wantOut)
	}
	for _, mode := range []string{"", "deferred"} {
		gotOut, got := run(override, mode)
		if gotOut != wantOut {
			t.Errorf("%s: return codes\n%s\nupstream:\n%s", mode, gotOut, wantOut)
		}
		for _, p := range slices.Sorted(keysOf(want, got)) {
			if want[p] != got[p] {
				t.Errorf("%s: %s: kib %q, upstream %q", mode, p, got[p], want[p])
			}
		}
	}
	if len(want) < 15 {
		t.Errorf("only %d entries copied: %v", len(want), want)
	}
}

// listTree describes every entry under dir: type, mode, link target, and for
// files their time and contents. Directory times are left out: they are the
// times of the run, and mkinitramfs clamps them.
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" %d sha256:%x", fi.ModTime().Unix(), sha256.Sum256(data))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keysOf(ms ...map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] && !yield(k) {
					return
				}
				seen[k] = true
			}
		}
	}
}
