package azure

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRangesCovers(t *testing.T) {
	r := ranges{{0, 512}, {512, 4096}, {8192, 10240}}
	tests := []struct {
		start, end int64
		want       bool
	}{
		{0, 4096, true},  // two touching ranges
		{100, 200, true}, // inside one
		{0, 8192, false}, // hole at 4096..8192
		{8192, 10240, true},
		{8192, 10752, false}, // runs past the end
		{20000, 20512, false},
	}
	for _, tt := range tests {
		if got := r.covers(tt.start, tt.end); got != tt.want {
			t.Errorf("covers(%d, %d) = %v, want %v", tt.start, tt.end, got, tt.want)
		}
	}
	if (ranges(nil)).covers(0, 512) {
		t.Error("empty ranges cover something")
	}
}

func TestDataExtentsFindsHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 32 << 20} {
		if _, err := f.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := dataExtents(f, size)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, e := range ex {
		data += e.end - e.start
	}
	if len(ex) == 1 && ex[0] == (extent{0, size}) {
		t.Skip("this file system reports no holes")
	}
	if !overlaps(ex, 0, 4) || !overlaps(ex, 32<<20, 32<<20+4) || overlaps(ex, 8<<20, 16<<20) || data > 16<<20 {
		t.Errorf("extents %v of a file with data at 0 and 32 MiB", ex)
	}
}

func TestAllZero(t *testing.T) {
	b := make([]byte, RangeSize)
	if !allZero(b) || !allZero(b[:512]) {
		t.Fatal("zeros not seen as zeros")
	}
	b[RangeSize-1] = 1
	if allZero(b) {
		t.Fatal("a non-zero last byte missed")
	}
}
