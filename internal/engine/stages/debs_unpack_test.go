package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/debtest"
)

func TestDebsUnpack(t *testing.T) {
	dir := t.TempDir()
	gz := debtest.Build(t, dir, debtest.Pkg{Name: "kib-tool", Version: "1:1.0-1",
		Files: map[string]string{"bin/tool": "tool\n", "usr/share/doc/kib-tool/copyright": "free\n"}})
	// A second package compressed with xz, as Debian's are.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(root, "sbin"), 0o755)
	os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: kib-other\nVersion: 2\nArchitecture: amd64\nMaintainer: kib <kib@example.org>\nDescription: other\n"), 0o644)
	os.WriteFile(filepath.Join(root, "sbin/other"), []byte("other\n"), 0o755)
	os.Symlink("other", filepath.Join(root, "sbin/other-link"))
	xzDeb := filepath.Join(dir, "kib-other_2_amd64.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, xzDeb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	env := &Env{Tree: t.TempDir(), Arch: "amd64", Sources: map[string]string{}}
	var debs []string
	for _, p := range []string{gz, xzDeb} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		d := hex.EncodeToString(sum[:])
		env.Sources[d] = p
		debs = append(debs, d)
	}
	s, err := New("debs-unpack", []byte(`{"debs":["`+strings.Join(debs, `","`)+`"],"alternatives":["/usr/bin/awk=/usr/bin/tool"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(env.Tree, p))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	// Files under /bin and /sbin land in /usr through merged-/usr links.
	if got := read("bin/tool"); got != "tool\n" {
		t.Errorf("/bin/tool = %q", got)
	}
	if got := read("usr/sbin/other-link"); got != "other\n" {
		t.Errorf("/usr/sbin/other-link = %q", got)
	}
	if l, _ := os.Readlink(filepath.Join(env.Tree, "sbin")); l != "usr/sbin" {
		t.Errorf("/sbin -> %q, want usr/sbin", l)
	}
	if fi, err := os.Stat(filepath.Join(env.Tree, "usr/sbin/other")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/sbin/other: %v %v", fi, err)
	}
	if l, _ := os.Readlink(filepath.Join(env.Tree, "usr/bin/awk")); l != "/usr/bin/tool" {
		t.Errorf("/usr/bin/awk -> %q", l)
	}
	status := read("var/lib/dpkg/status")
	if !strings.Contains(status, "Package: kib-tool\nStatus: install ok unpacked\n") || !strings.Contains(status, "Package: kib-other\n") {
		t.Errorf("dpkg status:\n%s", status)
	}

	// Options are checked by field.
	for _, bad := range []string{`{"debs":[]}`, `{"debs":["xyz"]}`, `{"debs":["` + debs[0] + `"],"alternatives":["awk"]}`} {
		if _, err := New("debs-unpack", []byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestDebPath(t *testing.T) {
	for in, want := range map[string]string{
		"./bin/sh": "usr/bin/sh", "./lib64/ld.so": "usr/lib64/ld.so", "./usr/bin/x": "usr/bin/x",
		"./etc/../../x": "x", "./binx/y": "binx/y", "./": "",
	} {
		if got := debPath(in); got != want {
			t.Errorf("debPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzUnpackDeb feeds arbitrary bytes as a .deb: errors, never a panic, and
// nothing written outside the tree.
func FuzzUnpackDeb(f *testing.F) {
	dir := f.TempDir()
	seed, err := os.ReadFile(debtest.Build(f, dir, debtest.Pkg{Name: "kib-seed", Version: "1", Files: map[string]string{"bin/x": "x"}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		deb := filepath.Join(parent, "in.deb")
		if err := os.WriteFile(deb, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tree := filepath.Join(parent, "tree")
		os.Mkdir(tree, 0o755)
		root, err := os.OpenRoot(tree)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		if _, data, err := decodeDeb(deb); err == nil {
			_ = unpackTar(bytes.NewReader(data), root)
		}
		entries, _ := os.ReadDir(parent)
		if len(entries) != 2 {
			t.Errorf("the unpack wrote beside the tree: %v", entries)
		}
	})
}

// TestDebsUnpackDecoders unpacks the same xz-compressed packages with the
// host's xz and with Go's decoder: the trees are the same, entry by entry.
// The second package replaces a file and a link of the first, as a later
// package does in dpkg's order.
func TestDebsUnpackDecoders(t *testing.T) {
	if hostXZ() == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: the host has no xz (apt-get install xz-utils)")
		}
		t.Skip("the host has no xz: only Go's decoder to test")
	}
	dir := t.TempDir()
	mk := func(name string, files map[string]string, links map[string]string) string {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
		os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: "+name+"\nVersion: 1\nArchitecture: amd64\nMaintainer: kib <kib@example.org>\nDescription: x\n"), 0o644)
		for p, c := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
			os.WriteFile(filepath.Join(root, p), []byte(c), 0o644)
		}
		for p, target := range links {
			os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
			os.Symlink(target, filepath.Join(root, p))
		}
		deb := filepath.Join(dir, name+".deb")
		if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v\n%s", err, out)
		}
		return deb
	}
	first := mk("kib-first", map[string]string{"usr/share/a/one": "1\n", "etc/conf": "first\n"}, map[string]string{"usr/bin/l": "one"})
	second := mk("kib-second", map[string]string{"usr/share/a/two": "2\n", "etc/conf": "second\n"}, map[string]string{"usr/bin/l": "two"})
	srcs := map[string]string{}
	var debs []string
	for _, p := range []string{first, second} {
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		d := hex.EncodeToString(sum[:])
		srcs[d], debs = p, append(debs, d)
	}
	unpack := func() string {
		env := &Env{Tree: t.TempDir(), Arch: "amd64", Sources: srcs}
		if err := (&DebsUnpack{Debs: debs}).Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		return env.Tree
	}
	withXZ := unpack()
	saved := hostXZ
	hostXZ = func() string { return "" }
	withGo := unpack()
	hostXZ = saved
	if a, b := entryListing(t, withXZ), entryListing(t, withGo); a != b {
		t.Errorf("host xz and Go's decoder differ:\n%s\n---\n%s", a, b)
	}
	if b, _ := os.ReadFile(filepath.Join(withGo, "etc/conf")); string(b) != "second\n" {
		t.Errorf("/etc/conf = %q, want the second package's", b)
	}
	if l, _ := os.Readlink(filepath.Join(withGo, "usr/bin/l")); l != "two" {
		t.Errorf("/usr/bin/l -> %q, want two", l)
	}
}

// entryListing lists every entry under root with its mode, link target and
// content.
func entryListing(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(rel + " " + fi.Mode().String())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			b.WriteString(" -> " + l)
		case fi.Mode().IsRegular():
			c, _ := os.ReadFile(p)
			b.WriteString(" " + string(c))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSizeHint(t *testing.T) {
	for _, tc := range []struct {
		control string
		want    int
	}{
		{"Package: libperl5.36\nInstalled-Size: 24000\nDepends: libc6\n", 24000 * 1024 * 9 / 8},
		{"Package: a\n", 0},
		{"Package: a\nInstalled-Size: lots\n", 0},
		{"Package: a\nInstalled-Size: -5\n", 0},
		{"Package: a\nInstalled-Size: 99999999999\n", 1 << 30 * 9 / 8},
	} {
		if got := sizeHint([]byte(tc.control)); got != tc.want {
			t.Errorf("sizeHint(%q) = %d, want %d", tc.control, got, tc.want)
		}
	}
}
