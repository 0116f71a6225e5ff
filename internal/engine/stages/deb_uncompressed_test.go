package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testCache is Env.Cache over a directory, as the store's objects are.
func testCache(t *testing.T, builds *int) func(context.Context, string, func(context.Context, string) error) (string, error) {
	root := t.TempDir()
	return func(ctx context.Context, key string, build func(context.Context, string) error) (string, error) {
		dir := filepath.Join(root, key)
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
		tmp := dir + ".tmp"
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return "", err
		}
		*builds++
		if err := build(ctx, tmp); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		return dir, os.Rename(tmp, dir)
	}
}

func dpkgDeb(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).Output()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v", args, err)
	}
	return out
}

// TestUncompressedDebs: each package, whatever its compressor, comes back
// with data.tar uncompressed, the same control member and the same data
// stream for dpkg; made once, then taken from the cache.
func TestUncompressedDebs(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: p\nVersion: 1\nArchitecture: amd64\nMaintainer: kib tests <kib@example.org>\nDescription: test\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "usr/share/p"), 0o755)
	// An odd size, so that the ar member needs its padding byte.
	os.WriteFile(filepath.Join(root, "usr/share/p/data"), bytes.Repeat([]byte("kib "), 30001)[:120003], 0o644)
	os.Symlink("data", filepath.Join(root, "usr/share/p/link"))

	env := &Env{Sources: map[string]string{}, ToolLog: &bytes.Buffer{}}
	builds := 0
	env.Cache = testCache(t, &builds)
	var sums []string
	for _, z := range []string{"xz", "zstd", "gzip", "none"} {
		deb := filepath.Join(dir, "p-"+z+".deb")
		dpkgDeb(t, "--root-owner-group", "-Z"+z, "--build", root, deb)
		data, _ := os.ReadFile(deb)
		sum := sha256.Sum256(data)
		s := hex.EncodeToString(sum[:])
		env.Sources[s] = deb
		sums = append(sums, s)
	}
	for round := range 2 {
		got, err := uncompressedDebs(context.Background(), env, sums, 2)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range sums {
			orig, u := env.Sources[s], got[s]
			members, err := readArMembers(u)
			if err != nil {
				t.Fatal(err)
			}
			if members[2].name != "data.tar" {
				t.Errorf("%s: data member %q", filepath.Base(orig), members[2].name)
			}
			if i == 3 && u != orig {
				t.Errorf("an uncompressed package was copied: %s", u)
			}
			if !bytes.Equal(dpkgDeb(t, "--fsys-tarfile", u), dpkgDeb(t, "--fsys-tarfile", orig)) {
				t.Errorf("%s: data.tar differs from the original's", filepath.Base(orig))
			}
			if !bytes.Equal(dpkgDeb(t, "--ctrl-tarfile", u), dpkgDeb(t, "--ctrl-tarfile", orig)) {
				t.Errorf("%s: control.tar differs from the original's", filepath.Base(orig))
			}
			x := filepath.Join(t.TempDir(), "x")
			dpkgDeb(t, "-x", u, x)
			if data, _ := os.ReadFile(filepath.Join(x, "usr/share/p/data")); len(data) != 120003 {
				t.Errorf("%s: extracted file has %d bytes", filepath.Base(orig), len(data))
			}
		}
		if builds != 3 {
			t.Errorf("round %d: %d packages made, want 3 (the uncompressed one is used as it is)", round, builds)
		}
	}

	t.Setenv("KIB_UNCOMPRESSED_DEBS", "off")
	got, err := uncompressedDebs(context.Background(), env, sums, 2)
	if err != nil || got[sums[0]] != env.Sources[sums[0]] {
		t.Errorf("KIB_UNCOMPRESSED_DEBS=off: %v, %v", got, err)
	}
}

// TestUncompressedDebsRefuse: what is not a Debian package is refused with
// its name, and nothing is kept in the cache.
func TestUncompressedDebsRefuse(t *testing.T) {
	dir := t.TempDir()
	header := func(name string, size int) string {
		return fmt.Sprintf("%-16s%-12s%-6s%-6s%-8s%-10d`\n", name, "0", "0", "0", "100644", size)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "not an ar archive"},
		{"text", "hello", "not an ar archive"},
		{"truncated", arMagic + header("debian-binary", 4) + "2.0\n" + header("control.tar.xz", 100) + "short", "bad size"},
		{"bad marker", arMagic + strings.Replace(header("debian-binary", 4), "`\n", "xx", 1) + "2.0\n", "bad end marker"},
		{"two members", arMagic + header("debian-binary", 4) + "2.0\n" + header("control.tar", 2) + "ab", "three members"},
		{"no control", arMagic + header("debian-binary", 4) + "2.0\n" + header("other", 2) + "ab" + header("data.tar.xz", 2) + "ab", "not control.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".deb")
			os.WriteFile(p, []byte(tc.data), 0o644)
			builds := 0
			env := &Env{Sources: map[string]string{"s": p}, ToolLog: &bytes.Buffer{}, Cache: testCache(t, &builds)}
			_, err := uncompressedDebs(context.Background(), env, []string{"s"}, 2)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error = %v, want %q naming %s", err, tc.want, p)
			}
			if builds != 0 {
				t.Errorf("%d objects made", builds)
			}
		})
	}
}

// FuzzReadArMembers: any file gives members or an error, never a panic,
// and members found lie within the file.
func FuzzReadArMembers(f *testing.F) {
	f.Add([]byte(arMagic + fmt.Sprintf("%-16s%-12s%-6s%-6s%-8s%-10d`\n", "debian-binary", "0", "0", "0", "100644", 4) + "2.0\n"))
	f.Add([]byte(arMagic))
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  -1        `\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "deb")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		members, err := readArMembers(p)
		if err != nil {
			return
		}
		for _, m := range members {
			if m.offset < 0 || m.size < 0 || m.offset+m.size > int64(len(data)) {
				t.Fatalf("member %q at %d+%d outside %d bytes", m.name, m.offset, m.size, len(data))
			}
		}
	})
}
