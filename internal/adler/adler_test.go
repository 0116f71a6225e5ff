package adler

import (
	"bytes"
	"hash/adler32"
	"testing"
)

func TestMatchesStdlib(t *testing.T) {
	data := make([]byte, 3*block+77)
	for i := range data {
		data[i] = byte(i*131 + i>>7)
	}
	ones := bytes.Repeat([]byte{0xff}, 3*block+77)
	for _, n := range []int{0, 1, 7, 8, 31, 32, 33, 5552, block - 1, block, block + 1, len(data)} {
		for name, buf := range map[string][]byte{"mixed": data, "0xff": ones} {
			if got, want := Checksum(buf[:n]), adler32.Checksum(buf[:n]); got != want {
				t.Errorf("%s[:%d]: %08x, want %08x", name, n, got, want)
			}
		}
	}
	h := New()
	for i := 0; i < len(data); i += 1000 {
		h.Write(data[i:min(i+1000, len(data))])
	}
	std := adler32.New()
	std.Write(data)
	if h.Sum32() != std.Sum32() || !bytes.Equal(h.Sum([]byte("x")), std.Sum([]byte("x"))) || h.Size() != std.Size() {
		t.Errorf("streamed %08x, want %08x", h.Sum32(), std.Sum32())
	}
	h.Reset()
	if h.Sum32() != 1 {
		t.Errorf("after Reset: %08x", h.Sum32())
	}
}

func TestCombine(t *testing.T) {
	ones := bytes.Repeat([]byte{0xff}, 200000)
	mixed := make([]byte, 200000)
	for i := range mixed {
		mixed[i] = byte(i*7 + i>>9)
	}
	for _, data := range [][]byte{ones, mixed} {
		for _, split := range []int{0, 1, mod - 1, mod, mod + 1, 2 * mod, 100000, len(data)} {
			want := adler32.Checksum(data)
			if got := Combine(Checksum(data[:split]), Checksum(data[split:]), int64(len(data)-split)); got != want {
				t.Errorf("split at %d: %08x, want %08x", split, got, want)
			}
		}
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte("Wikipedia"), 3)
	f.Add(bytes.Repeat([]byte{0xff}, 100), 40)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		if got, want := Checksum(data), adler32.Checksum(data); got != want {
			t.Fatalf("Checksum = %08x, want %08x", got, want)
		}
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		if got := Update(Checksum(data[:split]), data[split:]); got != adler32.Checksum(data) {
			t.Fatalf("Update in two parts = %08x", got)
		}
		if got := Combine(Checksum(data[:split]), Checksum(data[split:]), int64(len(data)-split)); got != adler32.Checksum(data) {
			t.Fatalf("Combine of two parts = %08x", got)
		}
	})
}

var sink uint32

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for range b.N {
		sink = Checksum(buf)
	}
}

func BenchmarkStdlib(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for range b.N {
		sink = adler32.Checksum(buf)
	}
}
