package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSourceFetchVerifyRefetch(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("kib"), 1000)
	sum := digest(content)
	var calls atomic.Int32
	fetch := func(_ context.Context, w io.Writer) error {
		calls.Add(1)
		_, err := w.Write(content)
		return err
	}
	ctx := context.Background()
	path, fetched, err := s.Source(ctx, sum, int64(len(content)), 1, fetch)
	if err != nil || !fetched {
		t.Fatalf("first Source: fetched=%v err=%v", fetched, err)
	}
	if _, fetched, _ := s.Source(ctx, sum, int64(len(content)), 1, fetch); fetched {
		t.Fatal("a verified source was fetched again")
	}
	tests := []struct {
		name    string
		corrupt func()
	}{
		{"truncated", func() { os.Chmod(path, 0o644); os.Truncate(path, 10) }},
		{"corrupted", func() {
			os.Chmod(path, 0o644)
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte("XXX"), 100)
			f.Close()
		}},
		{"missing", func() { os.Remove(path) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.corrupt()
			before := calls.Load()
			_, fetched, err := s.Source(ctx, sum, int64(len(content)), 1, fetch)
			if err != nil || !fetched || calls.Load() != before+1 {
				t.Fatalf("fetched=%v err=%v calls=%d", fetched, err, calls.Load()-before)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, content) {
				t.Fatal("store holds wrong content after refetch")
			}
		})
	}
}

func TestSourceBadDownloadIsNotStored(t *testing.T) {
	s, _ := Open(t.TempDir())
	content := []byte("the real content")
	sum := digest(content)
	tries := 0
	_, _, err := s.Source(context.Background(), sum, int64(len(content)), 2, func(_ context.Context, w io.Writer) error {
		tries++
		_, err := w.Write([]byte("a mirror's wrong answer"))
		return err
	})
	var ce *ChecksumError
	if !errors.As(err, &ce) || tries != 2 {
		t.Fatalf("err = %v after %d tries, want a ChecksumError after 2", err, tries)
	}
	if _, err := os.Stat(s.SourcePath(sum)); !os.IsNotExist(err) {
		t.Fatal("a file that failed verification was stored")
	}
	left, _ := filepath.Glob(filepath.Join(s.Dir(), "tmp", "*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestObjectBuiltOnceUnderConcurrency(t *testing.T) {
	dir := t.TempDir()
	key := digest([]byte("pipeline"))
	var builds atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine opens its own Store, as separate processes would.
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			path, _, err := s.Object(context.Background(), key, func(_ context.Context, d string) error {
				builds.Add(1)
				return os.WriteFile(filepath.Join(d, "out"), []byte("result"), 0o644)
			})
			if err != nil {
				t.Error(err)
				return
			}
			if b, err := os.ReadFile(filepath.Join(path, "out")); err != nil || string(b) != "result" {
				t.Errorf("read %q, %v", b, err)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("built %d times, want once", n)
	}
}

func TestObjectFailedBuildLeavesNothing(t *testing.T) {
	s, _ := Open(t.TempDir())
	key := digest([]byte("x"))
	_, _, err := s.Object(context.Background(), key, func(_ context.Context, d string) error {
		os.WriteFile(filepath.Join(d, "half"), []byte("partial"), 0o644)
		return errors.New("tool failed")
	})
	if err == nil {
		t.Fatal("no error")
	}
	if s.HasObject(key) {
		t.Fatal("failed build is in the store")
	}
	left, _ := filepath.Glob(filepath.Join(s.Dir(), "tmp", "*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestOpenSweepsDeadTempDirs(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	// A temp dir whose lock nobody holds, as after kill -9.
	stale := filepath.Join(dir, "tmp", "work-dead")
	os.MkdirAll(filepath.Join(stale, "tree"), 0o755)
	os.WriteFile(stale+".lock", nil, 0o644)
	live, done, err := s.TempDir("work")
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale temp dir survived Open")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("a live temp dir was removed")
	}
}

func TestCancelledLockWait(t *testing.T) {
	s, _ := Open(t.TempDir())
	key := digest([]byte("slow"))
	started := make(chan struct{})
	release := make(chan struct{})
	go s.Object(context.Background(), key, func(_ context.Context, d string) error {
		close(started)
		<-release
		return nil
	})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Object(ctx, key, func(context.Context, string) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(release)
}

func TestMountsUnder(t *testing.T) {
	info := []byte(`22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:50 / /s/tmp/obj-1/tree rw,relatime shared:40 - overlay kib-tree rw,lowerdir=/s/objects/a/tree
91 90 0:51 / /s/tmp/obj-1/tree/proc rw - proc proc rw
92 22 0:52 / /s/tmp/obj-10/tree rw - overlay kib-tree rw
93 22 0:53 / /s/tmp/obj-1/with\040space rw - tmpfs x rw
`)
	got := mountsUnder(info, "/s/tmp/obj-1")
	want := []string{"/s/tmp/obj-1/tree/proc", "/s/tmp/obj-1/tree", "/s/tmp/obj-1/with space"}
	if !slices.Equal(got, want) {
		t.Errorf("mountsUnder = %q, want %q", got, want)
	}
	if got := unescapeMountPath(`/a\040b\011c\134`); got != "/a b\tc\\" {
		t.Errorf("unescapeMountPath = %q", got)
	}
}

func TestRecords(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keyA, keyB := digest([]byte("a")), digest([]byte("b"))
	for key, data := range map[string]string{keyA: "set a", keyB: "set b"} {
		if _, _, err := s.Object(ctx, key, func(_ context.Context, d string) error {
			return WriteRecord(d, "pkgs", []byte(data))
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A failed build's record is not kept; an object without one is skipped.
	if _, _, err := s.Object(ctx, digest([]byte("failed")), func(_ context.Context, d string) error {
		if err := WriteRecord(d, "pkgs", []byte("failed")); err != nil {
			return err
		}
		return errors.New("stage failed")
	}); err == nil {
		t.Fatal("the failed build succeeded")
	}
	if _, _, err := s.Object(ctx, digest([]byte("none")), func(context.Context, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Records("pkgs")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range recs {
		got[filepath.Base(r.Object)] = string(r.Data)
	}
	if len(got) != 2 || got[keyA] != "set a" || got[keyB] != "set b" {
		t.Errorf("Records = %v", got)
	}
	if recs, err := s.Records("other"); err != nil || len(recs) != 0 {
		t.Errorf("Records(other) = %v, %v", recs, err)
	}
	for _, name := range []string{"", "../x", "a/b", "Upper", "*"} {
		if err := WriteRecord(t.TempDir(), name, nil); err == nil {
			t.Errorf("WriteRecord accepted the name %q", name)
		}
		if _, err := s.Records(name); err == nil {
			t.Errorf("Records accepted the name %q", name)
		}
	}
}
