package kojimeta

import "github.com/kib-project/kib/internal/buildinfo"

// BuildInfo is the build-info.json of one image (see package buildinfo).
type BuildInfo = buildinfo.BuildInfo

// Package is one Debian package of a build-info.json.
type Package = buildinfo.Package

// ReadBuildInfo reads and validates a build-info.json, and checks that its
// image is of a type Koji knows.
func ReadBuildInfo(path string) (*BuildInfo, error) {
	bi, err := buildinfo.Read(path)
	if err != nil {
		return nil, err
	}
	if _, err := Extension(bi.ExportFilename); err != nil {
		return nil, err
	}
	return bi, nil
}
