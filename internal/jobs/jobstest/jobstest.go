// Package jobstest has test doubles and helpers for code using the jobs
// queue: a recording Koji importer, a stand-in builder and database
// fixtures for both queue backends.
package jobstest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/jobs"
)

// StartQueue opens and starts a queue with cfg (StateDir defaults to a
// temporary directory) and stops and closes it when the test ends.
func StartQueue(tb testing.TB, cfg jobs.Config) *jobs.Queue {
	tb.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = tb.TempDir()
	}
	ctx := context.Background()
	q, err := jobs.Open(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		q.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(sctx); err != nil {
			tb.Errorf("stopping the queue: %v", err)
		}
		q.Close()
	})
	return q
}

// Backends names the queue backends every queue test runs against.
var Backends = []string{"sqlite", "postgres"}

// Database returns a jobs.Config.Database value for backend: "" for SQLite,
// or for PostgreSQL the DSN from KIB_TEST_POSTGRES with a fresh schema that
// is dropped when the test ends. The test fails when KIB_TEST_POSTGRES is
// unset: run .ci/postgres.sh and export its output.
func Database(t testing.TB, backend string) string {
	t.Helper()
	if backend == "sqlite" {
		return ""
	}
	dsn := os.Getenv("KIB_TEST_POSTGRES")
	if dsn == "" {
		t.Fatal("KIB_TEST_POSTGRES is unset: run `export KIB_TEST_POSTGRES=$(.ci/postgres.sh)` to test the PostgreSQL queue")
	}
	schema := "kibtest_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		t.Fatalf("KIB_TEST_POSTGRES=%s: %v", dsn, err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// KojiRecorder is a test double for jobs.KojiImporter: it records every
// call in order and hands out build ids from 1000.
type KojiRecorder struct {
	mu    sync.Mutex
	calls []string
	// Finalized are the arguments of the successful Finalize calls.
	Finalized []*jobs.KojiFinalizeArgs
	// Refunded are the arguments of the Refund calls.
	Refunded []*jobs.KojiRefundArgs
	// FailInit and FailFinalize make those calls fail.
	FailInit, FailFinalize bool
	// InitDelay is how long Init takes.
	InitDelay time.Duration
	// FinalizePanics makes every Finalize call panic (a koji-finalize
	// that fails on every attempt).
	FinalizePanics bool
	// FailRefunds makes that many Refund calls fail before they succeed.
	FailRefunds int
	next        uint64
}

var _ jobs.KojiImporter = (*KojiRecorder)(nil)

// Init implements jobs.KojiImporter.
func (k *KojiRecorder) Init(_ context.Context, a *jobs.KojiInitArgs) (*jobs.KojiInitResult, error) {
	time.Sleep(k.InitDelay)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "init "+a.Name+"-"+a.Version+"-"+a.Release)
	if k.FailInit {
		return nil, errors.New("CGInitBuild: build already exists")
	}
	k.next++
	return &jobs.KojiInitResult{BuildID: 1000 + k.next, Token: fmt.Sprintf("token-%d", k.next)}, nil
}

// Finalize implements jobs.KojiImporter.
func (k *KojiRecorder) Finalize(_ context.Context, a *jobs.KojiFinalizeArgs) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, fmt.Sprintf("finalize %d", a.BuildID))
	if k.FinalizePanics {
		panic("test koji: simulated crash in finalize")
	}
	if k.FailFinalize {
		return errors.New("CGImport: corrupted upload")
	}
	k.Finalized = append(k.Finalized, a)
	return nil
}

// Refund implements jobs.KojiImporter.
func (k *KojiRecorder) Refund(_ context.Context, a *jobs.KojiRefundArgs) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, fmt.Sprintf("refund %d", a.BuildID))
	if k.FailRefunds > 0 {
		k.FailRefunds--
		return errors.New("CGRefundBuild: hub unavailable (503)")
	}
	k.Refunded = append(k.Refunded, a)
	return nil
}

// Calls returns the calls so far, e.g. ["init N-V-R", "finalize 1001"].
func (k *KojiRecorder) Calls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.calls...)
}

// Builder is a stand-in jobs.Builder: it writes a small image, manifest,
// SBOM and log instead of building.
type Builder struct {
	// Fail makes builds of these architectures fail.
	Fail map[string]bool
	// PanicOnce makes the first build panic (a worker dying mid-job);
	// PanicAlways makes every build panic.
	PanicOnce, PanicAlways bool
	// Block makes every build wait until its context ends, as a long
	// build that is stopped would.
	Block     bool
	mu        sync.Mutex
	imageData func(imageType string) []byte
	builds    int
	panicked  bool
}

var _ jobs.Builder = (*Builder)(nil)

// SetImageData makes f give the image file's content (e.g. a real VHD or
// GCE tarball for upload tests) where it returns non-nil; otherwise an
// image is a short text.
func (b *Builder) SetImageData(f func(imageType string) []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.imageData = f
}

// Builds counts Build calls.
func (b *Builder) Builds() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds
}

// Build implements jobs.Builder.
func (b *Builder) Build(ctx context.Context, a *jobs.BuildArgs) (*jobs.BuildResult, error) {
	b.mu.Lock()
	b.builds++
	imageData := b.imageData
	if b.Block {
		b.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if b.PanicAlways || (b.PanicOnce && !b.panicked) {
		b.panicked = true
		b.mu.Unlock()
		panic("test builder: simulated crash")
	}
	b.mu.Unlock()
	if b.Fail[a.Image.Arch] {
		return nil, fmt.Errorf("mmdebstrap: exit status 1 (%s)", a.Image.Arch)
	}
	man, _ := json.Marshal(map[string]any{
		"version": 1, "arch": a.Image.Arch, "image_type": a.Image.ImageType, "seed": a.Seed,
		"sources": map[string]any{"debs": []map[string]any{{"name": "base-files", "version": "12.4+deb12u5", "arch": "amd64", "sha256": "00"}}},
	})
	imgData := "image " + a.Image.Arch
	if imageData != nil {
		if d := imageData(a.Image.ImageType); d != nil {
			imgData = string(d)
		}
	}
	files := []struct{ kind, name, data string }{
		{"image", a.Image.Filename, imgData},
		{"manifest", a.Image.Filename + ".manifest.json", string(man)},
		{"sbom", a.Image.Filename + ".image-os.spdx.json", `{"spdxVersion":"SPDX-2.3"}`},
		{"log", a.Image.Filename + ".build.log", "built\n"},
	}
	// build-info.json, as the engine writes it beside every image.
	imgSum := sha256.Sum256([]byte(files[0].data))
	manSum := sha256.Sum256(man)
	bootMode := a.Image.BootMode
	if bootMode == "" {
		bootMode = "none"
	}
	info, _ := json.Marshal(buildinfo.BuildInfo{Arch: a.Image.Arch, BootMode: bootMode, ExportName: a.Image.Export,
		ExportFilename: a.Image.Filename, KibVersion: "test", SHA256: hex.EncodeToString(imgSum[:]), Size: int64(len(files[0].data)),
		Distro: a.Distribution, ImageType: a.Image.ImageType, ManifestSHA256: hex.EncodeToString(manSum[:]),
		Packages: []buildinfo.Package{{Name: "base-files", Version: "12.4+deb12u5", Arch: "amd64", SHA256: strings.Repeat("0", 64)}}})
	files = append(files, struct{ kind, name, data string }{"info", "build-info.json", string(info)})
	res := &jobs.BuildResult{Manifest: man, Log: "built\n"}
	for _, f := range files {
		p := filepath.Join(a.OutputDir, f.name)
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(f.data))
		res.Artifacts = append(res.Artifacts, jobs.Artifact{Kind: f.kind, Name: f.name, Path: p, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(f.data))})
	}
	return res, nil
}
