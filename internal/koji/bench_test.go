package koji_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// writeRandomFile writes size pseudo-random bytes to a new file.
func writeRandomFile(b *testing.B, dir string, size int64) string {
	b.Helper()
	p := filepath.Join(dir, "image.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for written := int64(0); written < size; written += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(int64(len(buf)), size-written)
		if _, err := f.Write(buf[:n]); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// peakHeap samples the heap in use (objects and fragments of spans in use) until stopped and returns its maximum.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// runtime/metrics, unlike ReadMemStats, does not stop the world.
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64() + sample[1].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkUpload uploads a file to kojitest over loopback with Koji's
// chunked, verified raw upload, and, in the same run, the same bytes with
// one plain HTTP POST to a handler that writes them to a file. It reports
// both throughputs, their ratio (upload/plain) and the peak live heap of
// the process (client and hub) during the Koji upload. Sizes: 64 MiB and
// 1 GiB, so the peak can be compared across sizes; each with the file's
// sha256 known (digest=known: kib koji import and the compose service take
// it from build-info.json, so the client only computes adler32) and
// computed while sending (digest=computed). The client has kib's defaults;
// KIB_BENCH_CHUNK sets the chunk size, KIB_BENCH_VERIFY=sha256 the hub's
// whole-file sha256 check.
func BenchmarkUpload(b *testing.B) {
	chunk := 0
	if s := os.Getenv("KIB_BENCH_CHUNK"); s != "" {
		chunk, _ = strconv.Atoi(s)
	}
	for _, bc := range []struct {
		size  int64
		known bool
	}{{64 << 20, true}, {64 << 20, false}, {1 << 30, true}, {1 << 30, false}} {
		size := bc.size
		mode := "digest=computed"
		if bc.known {
			mode = "digest=known"
		}
		b.Run(strconv.FormatInt(size>>20, 10)+"MiB/"+mode, func(b *testing.B) {
			dir := b.TempDir()
			src := writeRandomFile(b, dir, size)
			hub := kojitest.New(b, kojitest.Options{})
			hub.AddUser("kib", "pw")
			verify := koji.UploadVerifyKoji
			if os.Getenv("KIB_BENCH_VERIFY") == "sha256" {
				verify = koji.UploadVerifySHA256
			}
			c, err := koji.New(hub.URL, koji.Options{UploadChunkSize: chunk, UploadVerify: verify})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Login(ctx, "kib", "pw"); err != nil {
				b.Fatal(err)
			}
			plainDir := b.TempDir()
			var plainN atomic.Int64
			plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f, err := os.Create(filepath.Join(plainDir, "plain-"+strconv.FormatInt(plainN.Add(1), 10)))
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				defer f.Close()
				if _, err := io.Copy(f, r.Body); err != nil {
					http.Error(w, err.Error(), 500)
				}
			}))
			defer plain.Close()

			known := ""
			if bc.known {
				known = fileSHA256(b, src)
			}
			var kojiTime, plainTime time.Duration
			var peak uint64
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				runtime.GC()
				stop := peakHeap()
				t0 := time.Now()
				if _, err := c.UploadFiles(ctx, "bench/"+strconv.Itoa(i), []koji.UploadFile{{Path: src, SHA256: known}}, nil); err != nil {
					b.Fatal(err)
				}
				kojiTime += time.Since(t0)
				peak = max(peak, stop())

				f, err := os.Open(src)
				if err != nil {
					b.Fatal(err)
				}
				t0 = time.Now()
				resp, err := http.Post(plain.URL, "application/octet-stream", f)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				plainTime += time.Since(t0)
				f.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("plain POST: %s", resp.Status)
				}
				// Keep the disk from filling up across iterations.
				_ = os.RemoveAll(filepath.Join(hub.Dir, "work", "bench"))
				_ = os.RemoveAll(plainDir)
				_ = os.MkdirAll(plainDir, 0o755)
			}
			b.StopTimer()
			mb := float64(size) * float64(b.N) / (1 << 20)
			b.ReportMetric(mb/kojiTime.Seconds(), "upload-MiB/s")
			b.ReportMetric(mb/plainTime.Seconds(), "plain-MiB/s")
			b.ReportMetric(plainTime.Seconds()/kojiTime.Seconds(), "upload/plain")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

func fileSHA256(b *testing.B, path string) string {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BenchmarkCGImport measures one CGImport round trip (a reserved build with
// an image, a manifest and a log) against kojitest.
func BenchmarkCGImport(b *testing.B) {
	hub := kojitest.New(b, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	c, _ := koji.New(hub.URL, koji.Options{})
	ctx := context.Background()
	if err := c.Login(ctx, "kib", "pw"); err != nil {
		b.Fatal(err)
	}
	data := map[string][]byte{"disk.qcow2": make([]byte, 300<<10), "disk.qcow2.manifest.json": []byte(`{}`), "build.log": []byte("log\n")}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		nvr := koji.NVR{Name: "bench", Version: "1", Release: strconv.Itoa(i + 1)}
		res, err := c.CGInitBuild(ctx, "kib", nvr)
		if err != nil {
			b.Fatal(err)
		}
		dir := koji.UniqueUploadDir("bench")
		up := map[string]*koji.UploadResult{}
		for name, d := range data {
			r, err := c.Upload(ctx, dir, name, byteReaderAt(d), int64(len(d)), nil)
			if err != nil {
				b.Fatal(err)
			}
			up[name] = r
		}
		m := benchMetadata(nvr, res.BuildID, up)
		b.StartTimer()
		if _, err := c.CGImport(ctx, m, dir, res.Token); err != nil {
			b.Fatal(err)
		}
	}
}

type byteReaderAt []byte

func (r byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func benchMetadata(nvr koji.NVR, buildID int64, up map[string]*koji.UploadResult) map[string]any {
	return metadata(nvr, buildID, up)
}
