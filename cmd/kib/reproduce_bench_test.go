package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji/kojitest"
)

func runKibB(b *testing.B, args ...string) (string, error) {
	b.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// BenchmarkReproduceQCOW2 times `kib reproduce` of a qcow2 build in Koji,
// from command to verdict, against a plain `kib build --manifest` of the
// same manifest, both with the packages in the store and no pipeline
// outputs. The hub is kojitest on loopback. Set KIB_BENCH_DIR to keep the
// store between runs (default: a temporary directory).
func BenchmarkReproduceQCOW2(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root (kib build)")
	}
	dir := os.Getenv("KIB_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	store := filepath.Join(dir, "store")
	mf := filepath.Join(dir, "manifest.json")
	o, err := runKibB(b, "manifest", "--size", "4096MiB", "qcow2")
	if err != nil {
		b.Fatalf("manifest: %v\n%s", err, o)
	}
	os.WriteFile(mf, []byte(o), 0o644)
	warm := filepath.Join(dir, "warmup")
	os.RemoveAll(warm)
	if o, err := runKibB(b, "build", "--manifest", mf, "--store", store, "--output-dir", warm); err != nil {
		b.Fatalf("warm-up build: %v\n%s", err, o)
	}
	hub := kojitest.New(b, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	if o, err := runKibB(b, "koji", "import", "--server", hub.URL, "--user", "kib", "--password-file", pw,
		"--name", "bench-qcow2", "--version", "1", "--release", "1", filepath.Join(warm, "qcow2")); err != nil {
		b.Fatalf("import: %v\n%s", err, o)
	}
	var tBuild, tRepro time.Duration
	for i := 0; b.Loop(); i++ {
		os.RemoveAll(filepath.Join(store, "objects"))
		out := filepath.Join(dir, "build")
		os.RemoveAll(out)
		start := time.Now()
		if o, err := runKibB(b, "build", "--manifest", mf, "--store", store, "--output-dir", out); err != nil {
			b.Fatalf("build: %v\n%s", err, o)
		}
		tBuild += time.Since(start)
		out = filepath.Join(dir, "reproduce")
		os.RemoveAll(out)
		start = time.Now()
		o, err := runKibB(b, "reproduce", "--server", hub.URL, "--store", store, "--output-dir", out, "bench-qcow2-1-1")
		tRepro += time.Since(start)
		// A verdict is a result; anything else is a failure.
		code := exitCode(err)
		if code != 0 && code != 1 {
			b.Fatalf("reproduce: %v\n%s", err, o)
		}
		verdict := "identical"
		if code == 1 {
			verdict = "differs"
		}
		b.Logf("round %d: verdict %s", i+1, verdict)
		if verdict == "differs" {
			b.Logf("%s", o)
		}
	}
	n := float64(b.N)
	b.ReportMetric(tBuild.Seconds()/n, "build-s")
	b.ReportMetric(tRepro.Seconds()/n, "reproduce-s")
	b.ReportMetric(tRepro.Seconds()/tBuild.Seconds(), "reproduce/build")
}
