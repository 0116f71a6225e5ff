package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDigests(t *testing.T) {
	obj := t.TempDir()
	out := filepath.Join(obj, "out")
	os.Mkdir(out, 0o755)
	file := filepath.Join(out, "disk.vhd")
	os.WriteFile(file, []byte("disk"), 0o644)
	fi, _ := os.Stat(file)

	if d := Digests(obj); d != nil {
		t.Fatalf("digests of an object without the record: %v", d)
	}
	d := NewDigest("aa", fi)
	if err := AddDigests(obj, map[string]Digest{"disk.vhd": d}); err != nil {
		t.Fatal(err)
	}
	if err := AddDigests(obj, map[string]Digest{"other": NewDigest("bb", fi)}); err != nil {
		t.Fatal(err)
	}
	got := Digests(obj)
	if got["disk.vhd"] != d || got["other"].SHA256 != "bb" {
		t.Fatalf("digests %v: a second file replaced the first", got)
	}
	if !got["disk.vhd"].Matches(fi) {
		t.Error("digest does not match the file it was taken of")
	}
	// A file written again (another time, or size) is not the one hashed.
	os.Chtimes(file, time.Time{}, fi.ModTime().Add(time.Nanosecond))
	fi2, _ := os.Stat(file)
	if got["disk.vhd"].Matches(fi2) {
		t.Error("digest matches a file with another modification time")
	}
	os.WriteFile(file, []byte("disk, longer"), 0o644)
	os.Chtimes(file, time.Time{}, fi.ModTime())
	fi3, _ := os.Stat(file)
	if got["disk.vhd"].Matches(fi3) {
		t.Error("digest matches a file of another size")
	}
	for _, bad := range []string{"", "a/b", "../x"} {
		if err := AddDigests(obj, map[string]Digest{bad: d}); err == nil {
			t.Errorf("AddDigests accepted the file name %q", bad)
		}
	}
	// A damaged record is no record: files are hashed again.
	os.WriteFile(filepath.Join(obj, "records", digestsRecord), []byte("{not json"), 0o644)
	if d := Digests(obj); d != nil {
		t.Errorf("damaged record read as %v", d)
	}
	if err := AddDigests(obj, map[string]Digest{"disk.vhd": d}); err != nil || Digests(obj)["disk.vhd"] != d {
		t.Errorf("a damaged record was not replaced: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(obj, "records", ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
