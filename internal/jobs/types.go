// Package jobs turns a compose into a graph of typed jobs (koji-init, one
// build per image, koji-finalize), runs them on a River queue (SQLite by
// default, PostgreSQL to scale) and derives the compose status from them the
// way osbuild-composer does.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Job kinds are stable strings, independent of the Go type names.
const (
	KindKojiInit     = "koji-init"
	KindBuild        = "build"
	KindKojiFinalize = "koji-finalize"
)

// Compose is one accepted compose request, already validated and mapped to
// kib's names by the API layer.
type Compose struct {
	// Tenant owns the compose; only the same tenant can see it. Empty when
	// the service runs without JWT authentication.
	Tenant string `json:"tenant"`
	// Distribution is the kib distro definition name, e.g. "debian-12".
	Distribution string `json:"distribution"`
	// Koji, when set, makes this a Koji compose: koji-init → builds →
	// koji-finalize.
	Koji *KojiTarget `json:"koji,omitempty"`
	// Images has one entry per image build.
	Images []ImageRequest `json:"images"`
	// Seed is shared by all image builds of the compose.
	Seed int64 `json:"seed"`
	// Request is the original API request body, kept for the record.
	Request json.RawMessage `json:"request,omitempty"`
}

// KojiTarget is the koji block of a compose request.
type KojiTarget struct {
	Server  string `json:"server"`
	TaskID  int64  `json:"task_id"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Release string `json:"release"`
}

// ImageRequest is one image of a compose.
type ImageRequest struct {
	Arch string `json:"arch"`
	// ImageType is kib's image type name from the distro definition.
	ImageType string `json:"image_type"`
	// APIImageType is the name the client used (e.g. "guest-image").
	APIImageType string `json:"api_image_type"`
	// Filename and Export come from the distro definition's image type.
	Filename     string          `json:"filename"`
	Export       string          `json:"export"`
	BootMode     string          `json:"boot_mode,omitempty"`
	Repositories []Repository    `json:"repositories,omitempty"`
	Blueprint    json.RawMessage `json:"blueprint,omitempty"`
	Targets      []UploadTarget  `json:"targets,omitempty"`
	Size         uint64          `json:"size,omitempty"`
}

// Repository is a package repository given in the request.
type Repository struct {
	BaseURL      string   `json:"baseurl"`
	PackageSets  []string `json:"package_sets,omitempty"`
	CheckGPG     bool     `json:"check_gpg,omitempty"`
	GPGKey       string   `json:"gpgkey,omitempty"`
	IgnoreSSL    bool     `json:"ignore_ssl,omitempty"`
	CheckRepoGPG bool     `json:"check_repo_gpg,omitempty"`
}

// UploadTarget is a validated upload target: the API type and its options.
type UploadTarget struct {
	Type    string          `json:"type"`
	Options json.RawMessage `json:"options,omitempty"`
}

// KojiFilename is the file name of an image in a Koji build:
// N-V-R.<arch><ext>, where ext is everything from the first dot of the
// export file name ("disk.raw.xz" → ".raw.xz").
func KojiFilename(k *KojiTarget, arch, filename string) string {
	ext := ""
	trimmed := filename
	if len(trimmed) > 0 && trimmed[0] == '.' {
		trimmed = trimmed[1:]
	}
	for i := 0; i < len(trimmed); i++ {
		if trimmed[i] == '.' {
			ext = trimmed[i:]
			break
		}
	}
	return k.Name + "-" + k.Version + "-" + k.Release + "." + arch + ext
}

// ErrRetry, wrapped in a Builder's error, means the attempt did not fail
// on its own account (e.g. the remote worker running it stopped answering):
// the build is retried, on another worker, instead of failing.
var ErrRetry = errors.New("retry the job")

// Builder builds one image. The real implementation resolves a manifest and
// runs the engine; tests use small stand-ins.
type Builder interface {
	Build(ctx context.Context, args *BuildArgs) (*BuildResult, error)
}

// BuildArgs is what a build needs.
type BuildArgs struct {
	ComposeID    string
	JobID        string
	Distribution string
	Image        ImageRequest
	Seed         int64
	// OutputDir is an empty directory for the artifacts.
	OutputDir string
}

// BuildResult describes what a build produced.
type BuildResult struct {
	// Manifest is the pinned manifest that was executed (canonical JSON).
	Manifest json.RawMessage
	// Artifacts are the files produced, the image first.
	Artifacts []Artifact
	// Log is the human-facing build log.
	Log string
}

// Artifact is one file a build produced.
type Artifact struct {
	// Kind is "image", "manifest", "sbom", "log" or "info".
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// KojiImporter does the Koji side of a Koji compose. The lead wires it to the
// real XML-RPC client; tests use a recording double.
type KojiImporter interface {
	// Init reserves a build (CGInitBuild).
	Init(ctx context.Context, args *KojiInitArgs) (*KojiInitResult, error)
	// Finalize uploads every artifact into args.Directory and imports the
	// build (CGImport).
	Finalize(ctx context.Context, args *KojiFinalizeArgs) error
	// Refund gives a reservation back (CGRefundBuild).
	Refund(ctx context.Context, args *KojiRefundArgs) error
}

// KojiInitArgs are the arguments of CGInitBuild.
type KojiInitArgs struct {
	Server  string
	Name    string
	Version string
	Release string
}

// KojiInitResult is the reservation CGInitBuild returned.
type KojiInitResult struct {
	BuildID uint64
	Token   string
}

// KojiFinalizeArgs is everything needed to upload and import a build.
type KojiFinalizeArgs struct {
	Server  string
	Name    string
	Version string
	Release string
	TaskID  int64
	BuildID uint64
	Token   string
	// Directory is the hub upload directory, unique per compose:
	// "kib-cg/kib-koji-<uuid>".
	Directory string
	StartTime time.Time
	EndTime   time.Time
	Images    []KojiImage
}

// KojiImage is one built image of a Koji compose.
type KojiImage struct {
	Arch      string
	ImageType string
	BootMode  string
	Export    string
	// Filename is the Koji file name of the image (see KojiFilename).
	Filename  string
	Manifest  json.RawMessage
	Artifacts []Artifact
	// Uploads are the image's successful cloud uploads.
	Uploads []TargetResult
}

// KojiRefundArgs names the reservation to give back.
type KojiRefundArgs struct {
	Server  string
	BuildID uint64
	Token   string
}
