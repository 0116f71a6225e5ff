package koji_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestUpload(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		inject  []kojitest.Injection
		chunks  int // raw upload requests expected
		checkUp int // checkUpload calls expected
	}{
		{"empty file", 0, nil, 1, 1},
		{"one chunk", 1000, nil, 1, 1},
		{"several chunks", 10*1024 + 17, nil, 11, 1},
		{"dropped mid-chunk resumes", 10 * 1024, []kojitest.Injection{{Nth: 6, Drop: true, DropAfter: 300}}, 11, 2},
		{"answer lost after a full chunk is not re-sent", 10 * 1024, []kojitest.Injection{{Nth: 6, DropResponse: true}}, 10, 2},
		{"HTTP error resumes", 4 * 1024, []kojitest.Injection{{Method: "rawUpload", Status: 502}}, 5, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, koji.Options{UploadChunkSize: 1024})
			for _, in := range tt.inject {
				if in.Nth != 0 {
					in.Nth += 2 // login and the first requests are counted too
				}
				b.hub.Inject(in)
			}
			data := randomBytes(tt.size, uint64(tt.size))
			dir := koji.UniqueUploadDir("kib-test")
			var last koji.UploadProgress
			res, err := b.client.Upload(context.Background(), dir, "disk.qcow2", bytes.NewReader(data), int64(len(data)), func(p koji.UploadProgress) { last = p })
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if res.Size != int64(len(data)) || res.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("result = %+v", res)
			}
			if last.Sent != int64(len(data)) || last.Total != int64(len(data)) {
				t.Errorf("last progress = %+v", last)
			}
			got, err := os.ReadFile(filepath.Join(b.hub.Dir, "work", dir, "disk.qcow2"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("hub holds %d bytes that differ from the %d sent", len(got), len(data))
			}
			var raw, check int
			for _, m := range b.hub.Calls() {
				switch m {
				case "rawUpload":
					raw++
				case "checkUpload":
					check++
				}
			}
			if raw != tt.chunks || check != tt.checkUp {
				t.Errorf("rawUpload x%d checkUpload x%d, want x%d x%d", raw, check, tt.chunks, tt.checkUp)
			}
		})
	}
}

func TestUploadRules(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	data := []byte("hello")
	if _, err := b.client.Upload(ctx, "dir", ".hidden", bytes.NewReader(data), 5, nil); err == nil || !strings.Contains(err.Error(), "bare file name") {
		t.Errorf("hidden name: %v", err)
	}
	if _, err := b.client.Upload(ctx, "../escape", "f.txt", bytes.NewReader(data), 5, nil); !errors.Is(err, koji.ErrGeneric) || !strings.Contains(err.Error(), "Invalid upload directory") {
		t.Errorf("escaping dir: %v", err)
	}
	if _, err := b.client.Upload(ctx, "shared", "f.txt", bytes.NewReader(data), 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Upload(ctx, "shared", "f.txt", bytes.NewReader(data), 5, nil); err == nil || !strings.Contains(err.Error(), "upload path exists") {
		t.Errorf("second upload of the same file: %v", err)
	}
	b.hub.AddUser("bob", "pw")
	bob, _ := koji.New(b.hub.URL, koji.Options{Retry: fastRetry})
	if err := bob.Login(ctx, "bob", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Upload(ctx, "shared", "g.txt", bytes.NewReader(data), 5, nil); err == nil || !strings.Contains(err.Error(), "not owner") {
		t.Errorf("other user's directory: %v", err)
	}
	anon, _ := koji.New(b.hub.URL, koji.Options{})
	if _, err := anon.Upload(ctx, "x", "f.txt", bytes.NewReader(data), 5, nil); err == nil {
		t.Error("anonymous upload succeeded")
	}
	if _, err := b.client.Upload(ctx, "tasks/1/1", "f.txt", bytes.NewReader(data), 5, nil); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("task dir as a user: %v, want AuthError", err)
	}
}

func TestUploadFilesParallel(t *testing.T) {
	b := setup(t, koji.Options{UploadChunkSize: 4096, UploadParallel: 2})
	local := t.TempDir()
	var files []koji.UploadFile
	want := map[string][]byte{}
	for i, name := range []string{"a.raw", "b.json", "c.log", "d.tar.xz"} {
		data := randomBytes(20000+i*5000, uint64(i))
		p := filepath.Join(local, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, koji.UploadFile{Path: p})
		want[name] = data
	}
	var mu sync.Mutex
	done := map[string]int64{}
	dir := koji.UniqueUploadDir("kib")
	res, err := b.client.UploadFiles(context.Background(), dir, files, func(p koji.UploadProgress) {
		mu.Lock()
		done[p.Name] = p.Sent
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		name := filepath.Base(files[i].Path)
		if r.Name != name || r.Size != int64(len(want[name])) || done[name] != r.Size {
			t.Errorf("%s: result %+v, progress %d", name, r, done[name])
		}
		got, _ := os.ReadFile(filepath.Join(b.hub.Dir, "work", dir, name))
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s differs on the hub", name)
		}
	}
	if _, err := b.client.UploadFiles(context.Background(), dir, []koji.UploadFile{{Path: filepath.Join(local, "missing")}}, nil); err == nil {
		t.Error("missing local file uploaded")
	}
}

func TestUploadKnownSHA256(t *testing.T) {
	b := setup(t, koji.Options{UploadChunkSize: 1000, UploadVerify: koji.UploadVerifySHA256})
	ctx := context.Background()
	local := filepath.Join(t.TempDir(), "disk.raw")
	data := randomBytes(5000, 5)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	good := hex.EncodeToString(sum[:])
	for _, tt := range []struct {
		name, sha, want string
	}{
		{"right digest", good, ""},
		{"wrong digest is caught by the hub", strings.Repeat("0", 64), "upload verification failed"},
		{"not a digest", "XYZ", "not 64 lower-case hex digits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := b.client.UploadFiles(ctx, koji.UniqueUploadDir("k"), []koji.UploadFile{{Path: local, SHA256: tt.sha}}, nil)
			if tt.want == "" {
				if err != nil || res[0].SHA256 != good {
					t.Fatalf("%+v %v", res, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestUploadWholeFileAdlerAfterResume: as Koji's client does, an upload
// that resumed a chunk checks the whole file's adler32 at the end, which
// catches bytes the hub changed after confirming them; one that did not
// resume checks the size only.
func TestUploadWholeFileAdlerAfterResume(t *testing.T) {
	for _, tt := range []struct {
		name    string
		resume  bool
		corrupt bool
		wantErr bool
	}{
		{"no resume", false, false, false},
		{"resumed", true, false, false},
		{"resumed, confirmed bytes changed on the hub", true, true, true},
		// Without a resume Koji's rule checks the size only: CGImport's
		// digest check is what catches this one.
		{"not resumed, confirmed bytes changed on the hub", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, koji.Options{UploadChunkSize: 1024})
			if tt.resume {
				b.hub.Inject(kojitest.Injection{Nth: 8, Drop: true, DropAfter: 300})
			}
			data := randomBytes(10*1024, 9)
			dir := koji.UniqueUploadDir("kib-test")
			onHub := filepath.Join(b.hub.Dir, "work", dir, "disk.raw")
			progress := func(p koji.UploadProgress) {
				if tt.corrupt && p.Sent == 3*1024 {
					f, err := os.OpenFile(onHub, os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.WriteAt([]byte{^data[100]}, 100)
					f.Close()
				}
			}
			_, err := b.client.Upload(context.Background(), dir, "disk.raw", bytes.NewReader(data), int64(len(data)), progress)
			if tt.wantErr != (err != nil) || err != nil && !errors.Is(err, koji.ErrUploadMismatch) {
				t.Errorf("err = %v, want error: %v (ErrUploadMismatch)", err, tt.wantErr)
			}
		})
	}
}

// TestUploadRestartsWhenHubLosesData: if the hub no longer has what it
// confirmed (here the file is removed under it), the upload starts over
// rather than leaving a hole.
func TestUploadRestartsWhenHubLosesData(t *testing.T) {
	b := setup(t, koji.Options{UploadChunkSize: 1000})
	data := randomBytes(5500, 7)
	dir := koji.UniqueUploadDir("kib")
	hubFile := filepath.Join(b.hub.Dir, "work", dir, "f.raw")
	lost := false
	res, err := b.client.Upload(context.Background(), dir, "f.raw", bytes.NewReader(data), int64(len(data)), func(p koji.UploadProgress) {
		if p.Sent == 3000 && !lost {
			lost = true
			if err := os.Remove(hubFile); err != nil {
				t.Error(err)
			}
			b.hub.Inject(kojitest.Injection{Method: "rawUpload", Drop: true})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(hubFile)
	if err != nil || !bytes.Equal(got, data) || res.Size != 5500 {
		t.Fatalf("hub has %d bytes (%v), want the 5500 sent", len(got), err)
	}
}

func TestUploadShortSource(t *testing.T) {
	b := setup(t, koji.Options{UploadChunkSize: 10})
	_, err := b.client.Upload(context.Background(), "d", "f.raw", bytes.NewReader([]byte("only 18 bytes here")), 30, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v, want unexpected EOF", err)
	}
}
