// Package reproduce proves that an image in Koji is what its manifest says:
// it finds a build's image and the kib manifest beside it on the hub,
// downloads the manifest from the hub's topurl (checking it against the
// archive record), checks that this kib is the one that built the image,
// executes the manifest, and compares the result with the image in Koji,
// naming the first differing file-system entry when they differ. It only
// reads from the hub.
package reproduce

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/version"
)

// Builder executes a manifest; *engine.Engine is one.
type Builder interface {
	Build(ctx context.Context, m *manifest.Manifest, opts engine.Options) ([]engine.Artifact, error)
}

var _ Builder = (*engine.Engine)(nil)

// Reproducer rebuilds images of Koji builds. Set Hub, TopURL and Builder.
type Reproducer struct {
	Hub Hub
	// TopURL is the hub's file root (Koji's topurl), e.g.
	// https://koji.example.com/kojifiles.
	TopURL string
	// Builder executes the manifest.
	Builder Builder
	// HTTPClient downloads files; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Log receives progress and warnings; nil discards them.
	Log *slog.Logger
	// Progress, if set, is told about the phases (find, build, compare) and
	// download bytes.
	Progress engine.Progress
	// Version is the running kib's version; "" means version.String().
	Version string
}

// Options say what to reproduce.
type Options struct {
	// Build is the build's NVR or ID.
	Build string
	// Image chooses the image of a build with several (its Koji file name,
	// export name or export file name).
	Image string
	// OutputDir receives the rebuilt image (OutputDir/<export>/...) and,
	// when it differs, the Koji image (OutputDir/koji/<file>).
	OutputDir string
	// Force rebuilds even when another kib built the image, with a warning.
	Force bool
}

// Result is the verdict.
type Result struct {
	Target *Target
	// Artifact is the rebuilt image.
	Artifact engine.Artifact
	// KojiChecksum is the image's checksum as Koji records it (sha256 for
	// kib's imports).
	KojiChecksum string
	// Identical reports the same bytes.
	Identical bool
	// Difference says where the images first differ (when their contents
	// are the same and only the encoding differs, its Detail says so); nil
	// when identical.
	Difference *Difference
	// KojiPath is the downloaded Koji image when the images differ.
	KojiPath string
	// Warning is set when --force overrode a version mismatch.
	Warning error
}

func (r *Reproducer) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Reproducer) client() *http.Client {
	if r.HTTPClient != nil {
		return r.HTTPClient
	}
	return http.DefaultClient
}

func (r *Reproducer) step(n, total int, name string) {
	if r.Progress != nil {
		r.Progress.Step(n, total, name)
	}
}

func (r *Reproducer) bytes(done, total int64) {
	if r.Progress != nil {
		r.Progress.Bytes(done, total)
	}
}

// Run reproduces the image: find, fetch the manifest, check the version,
// build, compare. A version mismatch without Force is a *VersionError; a
// file that does not match its archive record is a *ChecksumError.
func (r *Reproducer) Run(ctx context.Context, o Options) (*Result, error) {
	if o.OutputDir == "" {
		return nil, fmt.Errorf("output directory: required")
	}
	running := r.Version
	if running == "" {
		running = version.String()
	}
	log := r.log()
	const total = 3
	r.step(1, total, "find build and manifest")
	t, err := Find(ctx, r.Hub, o.Build, o.Image)
	if err != nil {
		return nil, err
	}
	log.Info("found image", "build", t.Build.NVR, "build_id", t.Build.ID, "image", t.Image.Filename, "manifest", t.Manifest.Filename)
	var raw bytes.Buffer
	if t.Manifest.Size > 64<<20 {
		return nil, fmt.Errorf("manifest %s: %d bytes is more than a manifest can be (64 MiB)", t.Manifest.Filename, t.Manifest.Size)
	}
	if err := download(ctx, r.client(), r.TopURL, ArchivePath(t.Build, t.Manifest), t.Manifest, &raw, nil); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m, err := manifest.Parse(bytes.NewReader(raw.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", t.Manifest.Filename, err)
	}
	if t.ExportName == "" {
		return nil, fmt.Errorf("image %s: extra.image.osbuild_artifact.export_name is missing: which export of the manifest made it is unknown", t.Image.Filename)
	}
	ex, err := m.Export(t.ExportName)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", t.Image.Filename, err)
	}
	meta, err := buildMetadata(ctx, r.client(), r.TopURL, t.Build)
	if err != nil {
		return nil, err
	}
	res := &Result{Target: t, KojiChecksum: t.Image.Checksum}
	if err := CheckVersion(t, meta, m, running); err != nil {
		if !o.Force {
			return nil, err
		}
		res.Warning = err
		log.Warn("kib versions differ; rebuilding anyway (--force)", "built_by", err.(*VersionError).Build, "running", running)
	}
	if err := os.MkdirAll(o.OutputDir, 0o755); err != nil {
		return nil, err
	}
	r.step(2, total, "build "+ex.Name)
	arts, err := r.Builder.Build(ctx, m, engine.Options{OutputDir: o.OutputDir, Exports: []string{ex.Name}})
	if err != nil {
		return nil, fmt.Errorf("executing the manifest: %w", err)
	}
	if len(arts) != 1 {
		return nil, fmt.Errorf("executing the manifest: got %d images, want 1", len(arts))
	}
	res.Artifact = arts[0]
	r.step(3, total, "compare")
	local := arts[0].SHA256
	if t.Image.ChecksumType != checksumSHA256 {
		if local, err = fileDigest(arts[0].Path, t.Image); err != nil {
			return nil, err
		}
	}
	if local == t.Image.Checksum && arts[0].Size == t.Image.Size {
		res.Identical = true
		log.Info("identical", "sha256", arts[0].SHA256)
		return res, nil
	}
	// Find out where: fetch the Koji image beside the rebuilt one.
	kdir := filepath.Join(o.OutputDir, "koji")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return nil, err
	}
	res.KojiPath = filepath.Join(kdir, t.Image.Filename)
	log.Info("images differ; downloading the Koji image to find where", "file", res.KojiPath, "size", t.Image.Size)
	if err := downloadFile(ctx, r.client(), r.TopURL, ArchivePath(t.Build, t.Image), t.Image, res.KojiPath, r.bytes); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	tmp, err := os.MkdirTemp(kdir, ".compare-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	d, err := Compare(ctx, FormatOf(ex.Filename), res.KojiPath, arts[0].Path, tmp)
	if err != nil {
		return nil, fmt.Errorf("comparing: %w", err)
	}
	if d == nil {
		d = &Difference{Detail: "the contents are the same; the files differ in their encoding (compression, padding or metadata of the format)"}
	}
	res.Difference = d
	return res, nil
}

// fileDigest hashes path with the archive's checksum type.
func fileDigest(path string, a koji.Archive) (string, error) {
	h, err := newArchiveHash(a)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
