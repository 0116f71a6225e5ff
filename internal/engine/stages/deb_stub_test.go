package stages

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/debindex"
)

func TestExtractSet(t *testing.T) {
	dep := func(names ...string) []debindex.Dep {
		var g []debindex.Dep
		for _, n := range names {
			g = append(g, debindex.Dep{Name: n})
		}
		return g
	}
	pkgs := []debindex.Package{
		{Name: "base-files", Essential: true},
		{Name: "dpkg", Essential: true, PreDepends: [][]debindex.Dep{dep("libc6")}, Depends: [][]debindex.Dep{dep("tar")}},
		{Name: "libc6", Depends: [][]debindex.Dep{dep("libgcc-s1")}},
		{Name: "libgcc-s1"},
		{Name: "tar", Essential: true, PreDepends: [][]debindex.Dep{dep("libacl1")}},
		{Name: "libacl1"},
		// Every alternative, and the providers of a virtual name.
		{Name: "login", Essential: true, Depends: [][]debindex.Dep{dep("awk", "mawk-real")}},
		{Name: "mawk", Provides: dep("awk")},
		{Name: "gawk", Provides: dep("awk")},
		// Not Essential, but pre-depended on by a package that is not either.
		{Name: "systemd", PreDepends: [][]debindex.Dep{dep("libsystemd0")}, Depends: [][]debindex.Dep{dep("dbus")}},
		{Name: "libsystemd0", Depends: [][]debindex.Dep{dep("libzstd1")}},
		{Name: "libzstd1"},
		// Neither: stubs.
		{Name: "dbus"},
		{Name: "linux-image-amd64", Depends: [][]debindex.Dep{dep("linux-image-6.1.0-57-amd64")}},
		{Name: "linux-image-6.1.0-57-amd64"},
	}
	want := []string{"base-files", "dpkg", "gawk", "libacl1", "libc6", "libgcc-s1", "libsystemd0", "libzstd1", "login", "mawk", "tar"}
	var got []string
	for n := range extractSet(pkgs) {
		got = append(got, n)
	}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("extractSet = %v, want %v", slices.Sorted(slices.Values(got)), want)
	}
}

// TestStubDeb: a stub has the package's control member and, of its data,
// the directories and symlinks with their owners, modes and times.
func TestStubDeb(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: p\nVersion: 1\nArchitecture: amd64\nMaintainer: kib tests <kib@example.org>\nDescription: test\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "usr/share/doc/p"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/lib/p/private"), 0o700)
	os.WriteFile(filepath.Join(root, "usr/lib/p/big"), bytes.Repeat([]byte("x"), 1<<20), 0o644)
	os.WriteFile(filepath.Join(root, "usr/share/doc/p/copyright"), []byte("c"), 0o644)
	os.Symlink("p", filepath.Join(root, "usr/share/doc/q"))
	deb := filepath.Join(dir, "p.deb")
	dpkgDeb(t, "--root-owner-group", "-Znone", "--build", root, deb)

	builds := 0
	env := &Env{ToolLog: &bytes.Buffer{}, Cache: testCache(t, &builds)}
	stub, err := stubDeb(context.Background(), env, "sum", deb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stubDeb(context.Background(), env, "sum", deb); err != nil || builds != 1 {
		t.Fatalf("second stub: %v, %d made", err, builds)
	}
	if !bytes.Equal(dpkgDeb(t, "--ctrl-tarfile", stub), dpkgDeb(t, "--ctrl-tarfile", deb)) {
		t.Error("control.tar differs")
	}
	var want []string
	for _, l := range strings.Split(string(dpkgDeb(t, "-c", deb)), "\n") {
		if strings.HasPrefix(l, "d") || strings.HasPrefix(l, "l") {
			want = append(want, l)
		}
	}
	got := strings.Split(strings.TrimSpace(string(dpkgDeb(t, "-c", stub))), "\n")
	if !reflect.DeepEqual(got, want) || len(want) < 8 {
		t.Errorf("stub lists\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fi, _ := os.Stat(stub); fi.Size() > 64<<10 {
		t.Errorf("stub of %d bytes", fi.Size())
	}

	// A compressed package cannot be stubbed: the pool has uncompressed ones.
	gz := filepath.Join(dir, "p-gz.deb")
	dpkgDeb(t, "--root-owner-group", "-Zgzip", "--build", root, gz)
	if _, err := stubDeb(context.Background(), env, "gz", gz); err == nil || !strings.Contains(err.Error(), "not an uncompressed data.tar") {
		t.Errorf("stub of a compressed package: %v", err)
	}
}
