// Package kojimeta builds the Content Generator metadata of an image build
// (build, buildroots, outputs, extra.typeinfo.image, extra.osbuild_manifest)
// and the compose-status.json document, with the field names and layout
// osbuild-composer uses, so existing Koji tooling reads kib builds
// unchanged. It does no I/O beyond reading the local build's files.
package kojimeta

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/version"
)

// CGName is kib's content generator name on the hub.
const CGName = "kib"

// Metadata is the CGImport document (metadata_version 0).
type Metadata struct {
	MetadataVersion int         `json:"metadata_version"`
	Build           Build       `json:"build"`
	Buildroots      []Buildroot `json:"buildroots"`
	Outputs         []Output    `json:"output"`
}

// Build is the build section.
type Build struct {
	BuildID   int64      `json:"build_id,omitempty"`
	TaskID    int64      `json:"task_id,omitempty"`
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	Release   string     `json:"release"`
	Source    string     `json:"source"`
	StartTime int64      `json:"start_time"`
	EndTime   int64      `json:"end_time"`
	Extra     BuildExtra `json:"extra"`
}

// BuildExtra is build.extra: image info keyed by image file name, manifest
// info keyed by manifest file name.
type BuildExtra struct {
	TypeInfo        TypeInfo                     `json:"typeinfo"`
	OSBuildManifest map[string]ManifestExtraInfo `json:"osbuild_manifest,omitempty"`
}

// TypeInfo is build.extra.typeinfo.
type TypeInfo struct {
	Image map[string]ImageExtraInfo `json:"image"`
}

// ImageExtraInfo describes an image output (extra.image of the output, and
// the value under its file name in build.extra.typeinfo.image).
type ImageExtraInfo struct {
	Arch                string               `json:"arch"`
	BootMode            string               `json:"boot_mode,omitempty"`
	OSBuildArtifact     *OSBuildArtifact     `json:"osbuild_artifact,omitempty"`
	OSBuildVersion      string               `json:"osbuild_version,omitempty"`
	UploadTargetResults []UploadTargetResult `json:"upload_target_results,omitempty"`
}

// OSBuildArtifact names the exported pipeline and file of an image.
type OSBuildArtifact struct {
	ExportFilename string `json:"export_filename"`
	ExportName     string `json:"export_name"`
}

// UploadTargetResult locates an image uploaded to a cloud as well.
type UploadTargetResult struct {
	Name            string           `json:"name"`
	Options         map[string]any   `json:"options"`
	OSBuildArtifact *OSBuildArtifact `json:"osbuild_artifact,omitempty"`
}

// ManifestExtraInfo describes a manifest output.
type ManifestExtraInfo struct {
	Arch string        `json:"arch"`
	Info *ManifestInfo `json:"info,omitempty"`
}

// ManifestInfo says what produced a manifest.
type ManifestInfo struct {
	OSBuildComposerVersion string        `json:"osbuild_composer_version"`
	OSBuildComposerDeps    []version.Dep `json:"osbuild_composer_deps,omitempty"`
}

// SBOMExtraInfo describes an SBOM output.
type SBOMExtraInfo struct {
	Arch string `json:"arch"`
}

// Buildroot is one buildroot, one per image.
type Buildroot struct {
	ID               int              `json:"id"`
	Host             Host             `json:"host"`
	ContentGenerator ContentGenerator `json:"content_generator"`
	Container        Container        `json:"container"`
	Tools            []Tool           `json:"tools"`
	Components       []Component      `json:"components"`
	Extra            map[string]any   `json:"extra,omitempty"`
}

// Host is the machine a buildroot ran on.
type Host struct {
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// ContentGenerator names the CG and its version.
type ContentGenerator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Container is the buildroot's container ("none" for kib).
type Container struct {
	Type string `json:"type"`
	Arch string `json:"arch"`
}

// Tool is a tool used in a buildroot.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Component is an rpm, file or kojifile component: the only types a hub
// accepts.
type Component struct {
	Type         string  `json:"type"`
	Name         string  `json:"name,omitempty"`
	Version      string  `json:"version,omitempty"`
	Release      string  `json:"release,omitempty"`
	Epoch        *string `json:"epoch,omitempty"`
	Arch         string  `json:"arch,omitempty"`
	SigMD5       string  `json:"sigmd5,omitempty"`
	Signature    *string `json:"signature,omitempty"`
	Filename     string  `json:"filename,omitempty"`
	Filesize     int64   `json:"filesize,omitempty"`
	Checksum     string  `json:"checksum,omitempty"`
	ChecksumType string  `json:"checksum_type,omitempty"`
}

// Output is one output file.
type Output struct {
	BuildrootID  int            `json:"buildroot_id"`
	Filename     string         `json:"filename"`
	Filesize     int64          `json:"filesize"`
	Arch         string         `json:"arch"`
	ChecksumType string         `json:"checksum_type"`
	Checksum     string         `json:"checksum"`
	Type         string         `json:"type"`
	Components   []Component    `json:"components,omitempty"`
	Extra        map[string]any `json:"extra,omitempty"`
}

// File is an uploaded file: its name on the hub, size and sha256.
type File struct {
	Filename string
	Size     int64
	SHA256   string
}

// Image is one built image with its companions.
type Image struct {
	// Info is the local build's build-info.json.
	Info BuildInfo
	// Image is the image file as uploaded (Filename from ImageFilename).
	Image File
	// Manifest is the kib manifest, named Image.Filename + ".manifest.json".
	Manifest *File
	// SBOMs are SPDX documents, named Image.Filename + ".<purpose>.spdx.json".
	SBOMs []File
	// Logs are log files (type log, arch noarch).
	Logs []File
	// UploadTargetResults are cloud uploads of this image, if any.
	UploadTargetResults []UploadTargetResult
}

// Input is everything a build's metadata is made from.
type Input struct {
	Name, Version, Release string
	// BuildID and TaskID are the reservation's build and the Koji task, 0
	// if none.
	BuildID, TaskID int64
	Start, End      time.Time
	// HostOS and HostArch describe the machine that built the images
	// (e.g. "debian-12", "x86_64").
	HostOS, HostArch string
	// OSBuildVersion is reported as osbuild_version and the CG version;
	// ComposerVersion and Deps as the manifest's info. Defaults() fills
	// them with kib's version.
	OSBuildVersion  string
	ComposerVersion string
	Deps            []version.Dep
	Images          []Image
}

// Defaults fills the version fields from the running kib.
func (in *Input) Defaults() {
	if in.OSBuildVersion == "" {
		in.OSBuildVersion = version.String()
	}
	if in.ComposerVersion == "" {
		in.ComposerVersion = "kib-" + version.String()
	}
	if in.Deps == nil {
		in.Deps = version.Deps()
	}
}

var namePart = regexp.MustCompile(`^[A-Za-z0-9._+][A-Za-z0-9._+-]*$`)
var nvrPart = regexp.MustCompile(`^[A-Za-z0-9._+~^]+$`)
var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// KnownExtensions are the file extensions of Koji's default archive types
// that an image build uses; the hub refuses outputs with other extensions.
var KnownExtensions = []string{
	"iso", "raw", "qcow", "qcow2", "vmdk", "ova", "vdi", "vhd", "vhdx", "box", "raw.xz", "raw.gz",
	"qcow2.gz", "qcow2.xz", "iso.gz", "iso.xz", "vhd.gz", "vhd.xz", "vhdx.gz", "vhdx.xz", "vmdk.gz",
	"vmdk.xz", "tar", "tar.gz", "tar.bz2", "tar.xz", "tgz", "zip", "json", "yaml", "yml", "txt", "ks",
	"cfg", "xml", "liveimg.squashfs", "squashfs", "squashfs.gz", "squashfs.xz", "erofs", "erofs.gz",
	"erofs.xz", "wsl", "vmlinuz", "vmlinuz.gz", "vmlinuz.xz", "img", "sha256", "log",
}

// knownExtension reports whether Koji will accept filename's extension.
func knownExtension(filename string) bool {
	for _, ext := range KnownExtensions {
		if strings.HasSuffix(filename, "."+ext) {
			return true
		}
	}
	return false
}

// Extension returns the extension of an export file name as Koji will see
// it: the longest known archive extension ("root.tar.xz" -> "tar.xz").
func Extension(exportFilename string) (string, error) {
	best := ""
	for _, ext := range KnownExtensions {
		if strings.HasSuffix(exportFilename, "."+ext) && len(ext) > len(best) {
			best = ext
		}
	}
	if best == "" {
		return "", fmt.Errorf("export_filename %q: extension is not a Koji archive type (known: %s)", exportFilename, strings.Join(KnownExtensions, ", "))
	}
	return best, nil
}

// ImageFilenames returns the Koji file name of each image:
// "<name>-<version>-<release>.<arch>.<ext>", or with ".<image_type>" after
// the release for images that would otherwise share a name.
func ImageFilenames(name, version, release string, infos []BuildInfo) ([]string, error) {
	names := make([]string, len(infos))
	count := map[string]int{}
	for i, bi := range infos {
		ext, err := Extension(bi.ExportFilename)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		names[i] = fmt.Sprintf("%s-%s-%s.%s.%s", name, version, release, bi.Arch, ext)
		count[names[i]]++
	}
	seen := map[string]bool{}
	for i, bi := range infos {
		if count[names[i]] > 1 {
			ext, _ := Extension(bi.ExportFilename)
			names[i] = fmt.Sprintf("%s-%s-%s.%s.%s.%s", name, version, release, bi.ImageType, bi.Arch, ext)
		}
		if seen[names[i]] {
			return nil, fmt.Errorf("images %q: two images of the same type, arch and extension cannot be in one build", names[i])
		}
		seen[names[i]] = true
	}
	return names, nil
}

// buildRootTools are the build-root packages whose versions are reported
// as the buildroot's tools: what runs the stages.
var buildRootTools = []string{"mmdebstrap", "apt", "dpkg", "e2fsprogs", "dosfstools", "mtools", "fdisk",
	"grub-common", "grub-pc-bin", "grub-efi-amd64-bin", "systemd-boot-efi", "qemu-utils", "xz-utils", "tar"}

// buildTools lists kib and the image tools of the build root, if any.
func buildTools(bi BuildInfo) []Tool {
	tools := []Tool{{Name: "kib", Version: bi.KibVersion}}
	for _, name := range buildRootTools {
		for _, p := range bi.BuildRoot {
			if p.Name == name {
				tools = append(tools, Tool{Name: p.Name, Version: p.Version})
			}
		}
	}
	return tools
}

// buildComponents are the build root's packages. A hub knows the component
// types rpm, file and kojifile only; a .deb is not an rpm (no sigmd5, no
// rpm header), so each is a file component: its file name, size and sha256,
// which the hub accepts and links when it holds that file as an archive.
func buildComponents(bi BuildInfo) []Component {
	comps := []Component{}
	for _, p := range bi.BuildRoot {
		comps = append(comps, Component{Type: "file", Filename: DebFilename(p), Filesize: p.Size,
			Checksum: p.SHA256, ChecksumType: "sha256"})
	}
	return comps
}

// buildrootExtra keeps the build root's packages by name and version in the
// buildroot's extra, which the hub stores as given (getBuildroot).
func buildrootExtra(bi BuildInfo) map[string]any {
	if len(bi.BuildRoot) == 0 {
		return nil
	}
	return map[string]any{"debian_packages": bi.BuildRoot}
}

// DebFilename is the archive's file name of a Debian package
// (name_version_arch.deb, the version without its epoch).
func DebFilename(p Package) string {
	v := p.Version
	if _, after, ok := strings.Cut(v, ":"); ok {
		v = after
	}
	return p.Name + "_" + v + "_" + p.Arch + ".deb"
}

// BuildMetadata returns the CGImport metadata for in. It checks the input and names
// the field and rule of the first problem.
func BuildMetadata(in Input) (*Metadata, error) {
	if err := check(in); err != nil {
		return nil, err
	}
	m := &Metadata{
		Build: Build{
			BuildID: in.BuildID, TaskID: in.TaskID,
			Name: in.Name, Version: in.Version, Release: in.Release,
			StartTime: in.Start.Unix(), EndTime: in.End.Unix(),
			Extra: BuildExtra{TypeInfo: TypeInfo{Image: map[string]ImageExtraInfo{}}},
		},
		Buildroots: []Buildroot{},
		Outputs:    []Output{},
	}
	for i, img := range in.Images {
		bi := img.Info
		m.Buildroots = append(m.Buildroots, Buildroot{
			ID:               i,
			Host:             Host{OS: in.HostOS, Arch: in.HostArch},
			ContentGenerator: ContentGenerator{Name: CGName, Version: in.OSBuildVersion},
			Container:        Container{Type: "none", Arch: bi.Arch},
			Tools:            buildTools(bi),
			Components:       buildComponents(bi),
			Extra:            buildrootExtra(bi),
		})
		imgInfo := ImageExtraInfo{
			Arch:                bi.Arch,
			BootMode:            bi.BootMode,
			OSBuildArtifact:     &OSBuildArtifact{ExportFilename: bi.ExportFilename, ExportName: bi.ExportName},
			OSBuildVersion:      in.OSBuildVersion,
			UploadTargetResults: img.UploadTargetResults,
		}
		m.Build.Extra.TypeInfo.Image[img.Image.Filename] = imgInfo
		extra := map[string]any{"image": imgInfo}
		if len(bi.Packages) > 0 {
			// Koji has no component type for Debian packages (only rpm,
			// file, kojifile; file components that match nothing in Koji
			// are dropped), so they are kept in the archive's extra.
			extra["debian_packages"] = bi.Packages
		}
		m.Outputs = append(m.Outputs, Output{
			BuildrootID: i, Filename: img.Image.Filename, Filesize: img.Image.Size, Arch: bi.Arch,
			ChecksumType: "sha256", Checksum: img.Image.SHA256, Type: "image", Extra: extra,
		})
		if mf := img.Manifest; mf != nil {
			info := ManifestExtraInfo{Arch: bi.Arch, Info: &ManifestInfo{OSBuildComposerVersion: in.ComposerVersion, OSBuildComposerDeps: in.Deps}}
			if m.Build.Extra.OSBuildManifest == nil {
				m.Build.Extra.OSBuildManifest = map[string]ManifestExtraInfo{}
			}
			m.Build.Extra.OSBuildManifest[mf.Filename] = info
			m.Outputs = append(m.Outputs, Output{
				BuildrootID: i, Filename: mf.Filename, Filesize: mf.Size, Arch: bi.Arch,
				ChecksumType: "sha256", Checksum: mf.SHA256, Type: "osbuild-manifest", Extra: map[string]any{"image": info},
			})
		}
		for _, l := range img.Logs {
			m.Outputs = append(m.Outputs, Output{
				BuildrootID: i, Filename: l.Filename, Filesize: l.Size, Arch: "noarch",
				ChecksumType: "sha256", Checksum: l.SHA256, Type: "log",
			})
		}
		for _, s := range img.SBOMs {
			m.Outputs = append(m.Outputs, Output{
				BuildrootID: i, Filename: s.Filename, Filesize: s.Size, Arch: bi.Arch,
				ChecksumType: "sha256", Checksum: s.SHA256, Type: "sbom-doc", Extra: map[string]any{"image": SBOMExtraInfo{Arch: bi.Arch}},
			})
		}
	}
	return m, nil
}

func check(in Input) error {
	if !namePart.MatchString(in.Name) {
		return fmt.Errorf("build name %q: must be non-empty, of letters, digits and ._+-", in.Name)
	}
	for _, f := range []struct{ field, v string }{{"version", in.Version}, {"release", in.Release}} {
		if !nvrPart.MatchString(f.v) {
			return fmt.Errorf("build %s %q: must be non-empty, without '-', of letters, digits and ._+~^", f.field, f.v)
		}
	}
	if in.Start.IsZero() || in.End.IsZero() || in.End.Before(in.Start) {
		return fmt.Errorf("build start/end time: both must be set and end must not be before start")
	}
	if in.HostOS == "" || in.HostArch == "" {
		return fmt.Errorf("buildroot host os/arch: must be set")
	}
	if in.OSBuildVersion == "" || in.ComposerVersion == "" {
		return fmt.Errorf("versions: call Input.Defaults or set OSBuildVersion and ComposerVersion")
	}
	if len(in.Images) == 0 {
		return fmt.Errorf("images: at least one image is needed")
	}
	names := map[string]bool{}
	for i, img := range in.Images {
		if err := img.Info.Validate(); err != nil {
			return fmt.Errorf("image %d: build-info.json: %w", i, err)
		}
		files := []File{img.Image}
		if img.Manifest != nil {
			files = append(files, *img.Manifest)
		}
		files = slices.Concat(files, img.SBOMs, img.Logs)
		for _, f := range files {
			if f.Filename == "" || strings.ContainsAny(f.Filename, "/") || strings.HasPrefix(f.Filename, ".") {
				return fmt.Errorf("image %d: output filename %q: must be a bare file name not starting with '.'", i, f.Filename)
			}
			if !knownExtension(f.Filename) {
				return fmt.Errorf("image %d: output filename %q: extension is not a Koji archive type", i, f.Filename)
			}
			if !hexSHA256.MatchString(f.SHA256) {
				return fmt.Errorf("image %d: output %q: sha256 %q is not 64 lower-case hex digits", i, f.Filename, f.SHA256)
			}
			if f.Size < 0 {
				return fmt.Errorf("image %d: output %q: size %d is negative", i, f.Filename, f.Size)
			}
			if names[f.Filename] {
				return fmt.Errorf("image %d: output filename %q: used twice in one build", i, f.Filename)
			}
			names[f.Filename] = true
		}
	}
	return nil
}
