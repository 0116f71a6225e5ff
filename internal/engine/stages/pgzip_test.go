package stages

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// gzipInput is compressible but not trivial: words from a small vocabulary
// with runs of zeros, as a disk image has.
func gzipInput(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"kib ", "debian ", "image ", "builder ", "\x00\x00\x00\x00\x00\x00\x00\x00", "ext4 ", "grub\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(50) == 0 {
			b.Write(make([]byte, r.IntN(70000)))
		}
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(10) == 0 {
			b.WriteByte(byte(r.IntN(256)))
		}
	}
	return b.Bytes()[:n]
}

func pgzip(t *testing.T, data []byte, level, workers, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := newParallelGzip(&out, level, workers)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		k := min(chunk, len(data))
		if n, err := z.Write(data[:k]); err != nil || n != k {
			t.Fatalf("write: %d, %v", n, err)
		}
		data = data[k:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestParallelGzip(t *testing.T) {
	for _, size := range []int{0, 1, gzipDictSize - 1, gzipBlockSize - 1, gzipBlockSize, gzipBlockSize + 1, 3*gzipBlockSize + 12345} {
		data := gzipInput(size, uint64(size))
		ref := pgzip(t, data, 6, 1, 32<<10)
		r, err := gzip.NewReader(bytes.NewReader(ref))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		r.Multistream(false)
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("size %d: gunzip: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: round trip differs", size)
		}
		// One member: nothing after it.
		if rest, _ := io.ReadAll(r); len(rest) != 0 {
			t.Errorf("size %d: data after the member", size)
		}
		// The bytes do not depend on the workers or how the input is cut.
		for _, w := range []int{2, 8} {
			for _, chunk := range []int{4096, 1<<20 + 7} {
				if other := pgzip(t, data, 6, w, chunk); !bytes.Equal(other, ref) {
					t.Errorf("size %d: %d workers, writes of %d bytes give other bytes", size, w, chunk)
				}
			}
		}
	}
	// The shared dictionary keeps the size close to one stream's (on data
	// that does not compress 300:1, where the blocks' own overhead shows).
	r := rand.New(rand.NewPCG(99, 2))
	data := make([]byte, 4*gzipBlockSize)
	for i := range data {
		data[i] = "abcdefghijklmnopqrstuvwxyz \n"[min(r.IntN(40), 27)]
	}
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, 6)
	zw.Write(data)
	zw.Close()
	if par := pgzip(t, data, 6, 2, 1<<16); float64(len(par)) > 1.05*float64(one.Len()) {
		t.Errorf("parallel gzip %d bytes, one stream %d", len(par), one.Len())
	}
}

func TestParallelGzipErrors(t *testing.T) {
	if _, err := newParallelGzip(io.Discard, 0, 2); err == nil {
		t.Error("level 0 accepted")
	}
	boom := errors.New("disk full")
	z, err := newParallelGzip(&failAfter{n: 100, err: boom}, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	data := gzipInput(5*gzipBlockSize, 3)
	_, werr := z.Write(data)
	cerr := z.Close()
	if !errors.Is(werr, boom) && !errors.Is(cerr, boom) {
		t.Fatalf("write error %v, close error %v; want the writer's", werr, cerr)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}
