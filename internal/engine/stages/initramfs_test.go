package stages

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// cpioLike is compressible data of a few MiB, like an initramfs archive.
func cpioLike(t *testing.T) []byte {
	t.Helper()
	noise := make([]byte, 1<<20)
	rand.Read(noise)
	var b bytes.Buffer
	for i := 0; b.Len() < 6<<20; i++ {
		b.WriteString(strings.Repeat("070701 kernel/drivers/module.ko ", 100))
		b.Write(noise[(i*4096)%len(noise):][:4096])
	}
	return b.Bytes()
}

// TestCompressInitramfs replaces the stand-in's marker by the compressed
// archive, keeps what mkinitramfs wrote around it (an early cpio), the mode
// and the time, and consumes the archive.
func TestCompressInitramfs(t *testing.T) {
	tree, dir := t.TempDir(), t.TempDir()
	if err := prepareBuildDir(dir); err != nil {
		t.Fatal(err)
	}
	archive := cpioLike(t)
	os.WriteFile(filepath.Join(dir, "cpio", "mkinitramfs-MAIN_x1"), archive, 0o644)
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	img := filepath.Join(tree, "boot", "initrd.img-6.1.0-57-amd64")
	os.WriteFile(img, []byte("EARLY-CPIO"+cpioMarker+"mkinitramfs-MAIN_x1\nTAIL"), 0o600)
	mtime := time.Unix(1700000000, 0)
	os.Chtimes(img, mtime, mtime)
	os.Symlink("initrd.img-6.1.0-57-amd64", filepath.Join(tree, "boot", "initrd.img-link"))

	n, err := compressInitramfs(context.Background(), tree, dir)
	if err != nil || n != 1 {
		t.Fatalf("compressInitramfs = %d, %v", n, err)
	}
	data, _ := os.ReadFile(img)
	if !bytes.HasPrefix(data, []byte("EARLY-CPIO")) || !bytes.HasSuffix(data, []byte("TAIL")) {
		t.Fatalf("early cpio or tail lost: %q...%q", data[:16], data[len(data)-8:])
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	got, err := dec.DecodeAll(data[len("EARLY-CPIO"):len(data)-len("TAIL")], nil)
	if err != nil || !bytes.Equal(got, archive) {
		t.Fatalf("decompressed archive: %d bytes, %v; want the %d bytes handed over", len(got), err, len(archive))
	}
	fi, _ := os.Stat(img)
	if fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Errorf("mode %v, time %v; want 0600 and %v", fi.Mode().Perm(), fi.ModTime(), mtime)
	}
	if _, err := os.Stat(img + ".kib-new"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}

func TestCompressInitramfsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, image, archive, want string
	}{
		{"marker names no archive", cpioMarker + "other\n", "mkinitramfs-MAIN_a", "which no mkinitramfs run left"},
		{"archive claimed by no image", "plain gzip data", "mkinitramfs-MAIN_a", "found in no /boot/initrd.img-*"},
		{"unterminated marker", cpioMarker + "mkinitramfs-MAIN_a", "mkinitramfs-MAIN_a", "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree, dir := t.TempDir(), t.TempDir()
			prepareBuildDir(dir)
			os.WriteFile(filepath.Join(dir, "cpio", tc.archive), []byte("070701"), 0o644)
			os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
			os.WriteFile(filepath.Join(tree, "boot", "initrd.img-1"), []byte(tc.image), 0o644)
			_, err := compressInitramfs(context.Background(), tree, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	// No archive handed over (no kernel, or another compressor): nothing to do.
	tree, dir := t.TempDir(), t.TempDir()
	prepareBuildDir(dir)
	if n, err := compressInitramfs(context.Background(), tree, dir); n != 0 || err != nil {
		t.Fatalf("compressInitramfs without archives = %d, %v", n, err)
	}
}

// TestZstdSameOnEveryMachine: the compressed initramfs does not depend on
// the number of cores, so images stay bit-for-bit reproducible.
func TestZstdSameOnEveryMachine(t *testing.T) {
	data := cpioLike(t)
	var outs [][]byte
	for _, procs := range []int{1, 2, 4} {
		prev := runtime.GOMAXPROCS(procs)
		var b bytes.Buffer
		err := zstdCompress(context.Background(), &b, bytes.NewReader(data))
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.Bytes())
	}
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[0], outs[i]) {
			t.Fatalf("output with GOMAXPROCS %d differs from GOMAXPROCS 1", []int{1, 2, 4}[i])
		}
	}
}

// TestZstdStandIn runs the stand-in as mkinitramfs does (zstd -q -9 -c
// FILE > OUT): the archive lands in the helper directory and OUT holds the
// marker naming it.
func TestZstdStandIn(t *testing.T) {
	dir := t.TempDir()
	prepareBuildDir(dir)
	script, _ := os.ReadFile(filepath.Join(dir, "zstd"))
	// The script names buildDir; point it at the test's directory.
	os.WriteFile(filepath.Join(dir, "zstd"), bytes.ReplaceAll(script, []byte(buildDir), []byte(dir)), 0o755)
	src := filepath.Join(t.TempDir(), "mkinitramfs-MAIN_abc")
	os.WriteFile(src, []byte("070701 archive"), 0o644)
	out, err := exec.Command(filepath.Join(dir, "zstd"), "-q", "-9", "-c", src).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != cpioMarker+"mkinitramfs-MAIN_abc\n" {
		t.Errorf("stand-in wrote %q", out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "cpio", "mkinitramfs-MAIN_abc")); string(got) != "070701 archive" {
		t.Errorf("archive handed over = %q", got)
	}
}
