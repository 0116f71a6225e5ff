package sparse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// sparseFile makes a file of size bytes holding data at the given offsets,
// holes elsewhere.
func sparseFile(t testing.TB, path string, size int64, data map[int64][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func TestCopy(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		srcSize int64
		size    int64 // bytes to copy
		data    map[int64][]byte
	}{
		{"holes between data", 64 * mib, 64 * mib, map[int64][]byte{
			0: []byte("start"), 30 * mib: bytes.Repeat([]byte{7}, mib), 64*mib - 3: []byte("end")}},
		{"all hole", 8 * mib, 8 * mib, nil},
		{"empty", 0, 0, nil},
		{"padded past the source's end", 3*mib + 5, 4 * mib, map[int64][]byte{mib: []byte("x"), 3 * mib: []byte("tail!")}},
		{"first bytes only", 16 * mib, 2 * mib, map[int64][]byte{0: []byte("a"), 10 * mib: []byte("b")}},
	}
	for _, tt := range tests {
		for _, hash := range []bool{true, false} {
			t.Run(tt.name+map[bool]string{true: " hashed", false: ""}[hash], func(t *testing.T) {
				dir := t.TempDir()
				srcPath := filepath.Join(dir, "src")
				sparseFile(t, srcPath, tt.srcSize, tt.data)
				content, _ := os.ReadFile(srcPath)
				want := make([]byte, tt.size)
				copy(want, content)

				src, _ := os.Open(srcPath)
				defer src.Close()
				dstPath := filepath.Join(dir, "dst")
				dst, err := os.Create(dstPath)
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				var w io.Writer
				if hash {
					w = h
				}
				if err := Copy(context.Background(), dst, src, tt.size, w); err != nil {
					t.Fatal(err)
				}
				dst.Close()
				got, _ := os.ReadFile(dstPath)
				if !bytes.Equal(got, want) {
					t.Fatalf("copy differs from the source's first %d bytes (got %d bytes)", tt.size, len(got))
				}
				if hash {
					if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
						t.Errorf("hash is not the sha256 of the copied bytes")
					}
				}
				if a := allocated(t, dstPath); a > 4*mib {
					t.Errorf("copy uses %d bytes on disk for at most 1 MiB of data: holes were filled", a)
				}
			})
		}
	}
}

func TestData(t *testing.T) {
	const mib = 1 << 20
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	sparseFile(t, p, 16*mib, map[int64][]byte{2 * mib: bytes.Repeat([]byte{1}, mib), 9 * mib: []byte("z")})
	f, _ := os.Open(p)
	defer f.Close()
	ext, err := Data(f, 16*mib)
	if err != nil {
		t.Fatal(err)
	}
	// The file system reports data in blocks: each region must cover what
	// was written, and no region may reach into the big holes.
	covers := func(off int64) bool {
		for _, e := range ext {
			if off >= e.Start && off < e.End {
				return true
			}
		}
		return false
	}
	for _, off := range []int64{2 * mib, 3*mib - 1, 9 * mib} {
		if !covers(off) {
			t.Errorf("no data region covers offset %d: %v", off, ext)
		}
	}
	for _, off := range []int64{0, mib, 5 * mib, 12 * mib, 16*mib - 1} {
		if covers(off) {
			t.Errorf("a data region covers the hole at %d: %v", off, ext)
		}
	}
	if ext, _ := Data(f, mib); len(ext) != 0 {
		t.Errorf("first MiB (a hole): regions %v", ext)
	}
}

func TestCopyCancelled(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "src")
	sparseFile(t, p, 8<<20, map[int64][]byte{0: bytes.Repeat([]byte{1}, 8<<20)})
	src, _ := os.Open(p)
	defer src.Close()
	dst, _ := os.Create(filepath.Join(dir, "dst"))
	defer dst.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Copy(ctx, dst, src, 8<<20, sha256.New()); err == nil {
		t.Fatal("cancelled copy succeeded")
	}
}

// BenchmarkCopy copies a 1 GiB disk image with 256 MiB of data in runs
// between holes, hashing it, as kib exports images out of the store.
func BenchmarkCopy(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	run := bytes.Repeat([]byte{0x5a}, 16<<20)
	data := map[int64][]byte{}
	for i := range 16 {
		data[int64(i)*64<<20] = run
	}
	sparseFile(b, src, 1<<30, data)
	in, _ := os.Open(src)
	defer in.Close()
	b.SetBytes(1 << 30)
	for b.Loop() {
		out, err := os.Create(filepath.Join(dir, "dst"))
		if err != nil {
			b.Fatal(err)
		}
		if err := Copy(context.Background(), out, in, 1<<30, sha256.New()); err != nil {
			b.Fatal(err)
		}
		out.Close()
	}
}
