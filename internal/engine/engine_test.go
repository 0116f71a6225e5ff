package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/store"
)

func loadManifest(t *testing.T) *manifest.Manifest {
	t.Helper()
	f, err := os.Open("../manifest/testdata/tar.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := manifest.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKeys(t *testing.T) {
	m := loadManifest(t)
	k1, err := Keys(m)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := Keys(loadManifest(t))
	if strings.Join(k1, ",") != strings.Join(k2, ",") {
		t.Fatal("keys of the same manifest differ")
	}
	// Pipelines: packages, os (a copy of packages plus the
	// customizations), archive.
	tests := []struct {
		name                      string
		change                    func(m *manifest.Manifest)
		pkgSame, osSame, lastSame bool
	}{
		{"export pipeline option", func(m *manifest.Manifest) {
			m.Pipelines[2].Stages[0].Options = json.RawMessage(`{"compression":"none","filename":"root.tar.xz","source":"os"}`)
		}, true, true, false},
		{"os stage option", func(m *manifest.Manifest) { m.Pipelines[1].Stages[1].Options = json.RawMessage(`{"hostname":"other"}`) }, true, false, false},
		{"package set", func(m *manifest.Manifest) {
			m.Pipelines[0].Stages[0].Options = json.RawMessage(`{"debs":["` + m.Sources.Debs[0].SHA256 + `"],"packages":["adduser"],"suite":"bookworm"}`)
		}, false, false, false},
		{"seed", func(m *manifest.Manifest) { m.Seed++ }, false, false, false},
		{"source", func(m *manifest.Manifest) { m.Sources.Debs[0].URL += "x" }, false, false, false},
		{"exports only", func(m *manifest.Manifest) { m.Exports[0].BootMode = "uefi" }, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadManifest(t)
			tt.change(m)
			k, err := Keys(m)
			if err != nil {
				t.Fatal(err)
			}
			if (k[0] == k1[0]) != tt.pkgSame || (k[1] == k1[1]) != tt.osSame || (k[2] == k1[2]) != tt.lastSame {
				t.Fatalf("packages key same=%v (want %v), os key same=%v (want %v), archive key same=%v (want %v)",
					k[0] == k1[0], tt.pkgSame, k[1] == k1[1], tt.osSame, k[2] == k1[2], tt.lastSame)
			}
		})
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, _ := os.Create(src)
	f.Truncate(64 << 20)
	f.WriteAt([]byte("start"), 0)
	f.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 30<<20)
	f.WriteAt([]byte("end"), 64<<20-3)
	f.Close()
	want, _ := os.ReadFile(src)
	wantSum := sha256.Sum256(want)

	for _, withSum := range []bool{true, false} {
		dst := filepath.Join(dir, "dst-"+strconv.FormatBool(withSum))
		sum, size, err := copyFile(context.Background(), src, dst, withSum)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(dst)
		if !bytes.Equal(got, want) || size != int64(len(want)) {
			t.Fatalf("copy differs: size %d", size)
		}
		if withSum && sum != hex.EncodeToString(wantSum[:]) || !withSum && sum != "" {
			t.Errorf("sum %q (asked: %v)", sum, withSum)
		}
		if blocks := statBlocks(t, dst); blocks*512 > 8<<20 {
			t.Errorf("copy uses %d bytes on disk for 1 MiB of data: holes were filled", blocks*512)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".kib-tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestKeysBuildRoot checks that a build root's key depends on its own pins
// only (so manifests of other images share it), while the pipelines that
// run in it depend on its pins.
func TestKeysBuildRoot(t *testing.T) {
	withRoot := func(t *testing.T) *manifest.Manifest {
		m := loadManifest(t)
		d := m.Sources.Debs[0]
		m.Sources.BuildDebs = []manifest.Deb{d}
		build := manifest.Pipeline{Name: "build", Kind: manifest.KindTree, Stages: []manifest.Stage{{Type: "debs-unpack",
			Options: json.RawMessage(`{"debs":["` + d.SHA256 + `"]}`)}}}
		for i := range m.Pipelines {
			m.Pipelines[i].Build = "build"
		}
		m.Pipelines = append([]manifest.Pipeline{build}, m.Pipelines...)
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	k1, err := Keys(withRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	// Pipelines: build, packages, os, archive.
	tests := []struct {
		name                      string
		change                    func(m *manifest.Manifest)
		rootSame, pkgSame, osSame bool
	}{
		{"image package", func(m *manifest.Manifest) { m.Sources.Debs[1].URL += "x" }, true, false, false},
		{"seed", func(m *manifest.Manifest) { m.Seed++ }, true, false, false},
		{"os stage", func(m *manifest.Manifest) { m.Pipelines[2].Stages[1].Options = json.RawMessage(`{"hostname":"other"}`) }, true, true, false},
		{"build root package", func(m *manifest.Manifest) {
			m.Pipelines[0].Stages[0].Options = json.RawMessage(`{"debs":["` + m.Sources.Debs[1].SHA256 + `"]}`)
			m.Sources.BuildDebs[0] = m.Sources.Debs[1]
		}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := withRoot(t)
			tt.change(m)
			k, err := Keys(m)
			if err != nil {
				t.Fatal(err)
			}
			if (k[0] == k1[0]) != tt.rootSame || (k[1] == k1[1]) != tt.pkgSame || (k[2] == k1[2]) != tt.osSame {
				t.Fatalf("build root key same=%v (want %v), packages key same=%v (want %v), os key same=%v (want %v)",
					k[0] == k1[0], tt.rootSame, k[1] == k1[1], tt.pkgSame, k[2] == k1[2], tt.osSame)
			}
		})
	}
}

// TestCopyOutDigest checks that export takes the digest an object keeps for
// its file while the file is unchanged, hashes the file when it has none or
// the file changed, and keeps what it hashed.
func TestCopyOutDigest(t *testing.T) {
	obj := t.TempDir()
	out := filepath.Join(obj, "out")
	os.Mkdir(out, 0o755)
	src := filepath.Join(out, "disk.vhd")
	os.WriteFile(src, []byte("the disk"), 0o644)
	real := sha256.Sum256([]byte("the disk"))
	realHex := hex.EncodeToString(real[:])
	dst := filepath.Join(t.TempDir(), "disk.vhd")
	e := &Engine{}

	sum, size, err := e.copyOut(context.Background(), out, "disk.vhd", dst)
	if err != nil || sum != realHex || size != 8 {
		t.Fatalf("no digest kept: sum %s size %d err %v; want the file's", sum, size, err)
	}
	if d := store.Digests(obj)["disk.vhd"]; d.SHA256 != realHex {
		t.Fatalf("export kept digest %q, want %s", d.SHA256, realHex)
	}
	// A kept digest is taken as it is: plant one to see it used.
	fi, _ := os.Stat(src)
	planted := strings.Repeat("ab", 32)
	store.AddDigests(obj, map[string]store.Digest{"disk.vhd": store.NewDigest(planted, fi)})
	if sum, _, _ := e.copyOut(context.Background(), out, "disk.vhd", dst); sum != planted {
		t.Fatalf("sum %s: the kept digest was not used", sum)
	}
	// The file changed since: hashed again.
	os.Chtimes(src, time.Time{}, fi.ModTime().Add(time.Second))
	if sum, _, _ := e.copyOut(context.Background(), out, "disk.vhd", dst); sum != realHex {
		t.Fatalf("sum %s of a changed file: the stale digest was used", sum)
	}
	if got, _ := os.ReadFile(dst); string(got) != "the disk" {
		t.Errorf("copy holds %q", got)
	}
}
