// Package buildinfo is build-info.json: what the local build writes beside
// each image, and what imports into Koji read back.
package buildinfo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
)

// BuildInfo is the build-info.json the local build writes next to each
// image in OUTDIR/<export_name>/.
type BuildInfo struct {
	Arch           string    `json:"arch"`
	BootMode       string    `json:"boot_mode"`
	ExportName     string    `json:"export_name"`
	ExportFilename string    `json:"export_filename"`
	KibVersion     string    `json:"kib_version"`
	SHA256         string    `json:"sha256"`
	Size           int64     `json:"size"`
	Distro         string    `json:"distro"`
	ImageType      string    `json:"image_type"`
	Packages       []Package `json:"packages"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	// BuildRoot are the packages of the build root: the tools that made
	// the image. Empty for images built with the host's tools.
	BuildRoot []Package `json:"build_root,omitempty"`
}

// Package is one installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	SHA256  string `json:"sha256"`
	// Size is the .deb's size in bytes (set for build-root packages).
	Size int64 `json:"size,omitempty"`
}

// BootModes are the allowed boot_mode values.
var BootModes = []string{"none", "legacy", "uefi", "hybrid"}

// ReadBuildInfo reads and validates a build-info.json file. Unknown fields
// are an error, so producer and consumer stay in step.
func Read(path string) (*BuildInfo, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("build info: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var bi BuildInfo
	if err := dec.Decode(&bi); err != nil {
		return nil, fmt.Errorf("build info %s: %w", path, err)
	}
	if err := bi.Validate(); err != nil {
		return nil, fmt.Errorf("build info %s: %w", path, err)
	}
	return &bi, nil
}

// Validate checks the fields Koji metadata needs, naming the field and rule.
func (bi *BuildInfo) Validate() error {
	switch {
	case bi.Arch == "":
		return fmt.Errorf("arch: must be set (e.g. x86_64)")
	case !slices.Contains(BootModes, bi.BootMode):
		return fmt.Errorf("boot_mode %q: must be one of %v", bi.BootMode, BootModes)
	case bi.ExportName == "":
		return fmt.Errorf("export_name: must be set")
	case bi.ExportFilename == "":
		return fmt.Errorf("export_filename: must be set")
	case bi.KibVersion == "":
		return fmt.Errorf("kib_version: must be set")
	case !hexSHA256.MatchString(bi.SHA256):
		return fmt.Errorf("sha256 %q: must be 64 lower-case hex digits", bi.SHA256)
	case bi.Size < 0:
		return fmt.Errorf("size %d: must not be negative", bi.Size)
	case bi.ImageType == "":
		return fmt.Errorf("image_type: must be set")
	case bi.ManifestSHA256 != "" && !hexSHA256.MatchString(bi.ManifestSHA256):
		return fmt.Errorf("manifest_sha256 %q: must be 64 lower-case hex digits", bi.ManifestSHA256)
	}
	for i, p := range bi.Packages {
		if p.Name == "" || p.Version == "" || p.Arch == "" {
			return fmt.Errorf("packages[%d]: name, version and arch must be set", i)
		}
	}
	for i, p := range bi.BuildRoot {
		if p.Name == "" || p.Version == "" || p.Arch == "" {
			return fmt.Errorf("build_root[%d]: name, version and arch must be set", i)
		}
		if !hexSHA256.MatchString(p.SHA256) || p.Size <= 0 {
			return fmt.Errorf("build_root[%d] (%s): sha256 must be 64 lower-case hex digits and size positive", i, p.Name)
		}
	}
	return nil
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
