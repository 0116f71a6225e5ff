package reproduce

import (
	"fmt"
	"strings"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/manifest"
)

// VersionError reports a build made by another kib than the running one.
// Stages may differ between versions, so the rebuild could differ for that
// reason alone.
type VersionError struct {
	// Build is the kib version that built the image in Koji ("unknown" if
	// the hub does not say); Running is this kib's.
	Build, Running string
	// Source says where Build was read.
	Source string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("the image in Koji was built by kib %s (%s), this is kib %s: a rebuild may differ for that reason alone; run kib %s, or pass --force to rebuild anyway",
		e.Build, e.Source, e.Running, e.Build)
}

// BuiltBy returns the kib version that built the image, and where it was
// read: the kib tool of the image's buildroot in the CG metadata, else the
// image archive's extra.image.osbuild_version, else the manifest's
// generator. "" if none says.
func BuiltBy(t *Target, meta *kojimeta.Metadata, m *manifest.Manifest) (version, source string) {
	if meta != nil {
		for _, o := range meta.Outputs {
			if o.Filename != t.Image.Filename {
				continue
			}
			for _, br := range meta.Buildroots {
				if br.ID != o.BuildrootID {
					continue
				}
				for _, tool := range br.Tools {
					if tool.Name == "kib" && tool.Version != "" {
						return tool.Version, "buildroot tool kib in metadata.json"
					}
				}
			}
		}
	}
	if v := osbuildVersion(t.Image); v != "" {
		return v, "archive extra.image.osbuild_version"
	}
	if m != nil {
		if v, ok := strings.CutPrefix(m.Generator, "kib "); ok && v != "" {
			return v, "manifest generator"
		}
	}
	return "", ""
}

func osbuildVersion(a koji.Archive) string {
	img, _ := a.Extra["image"].(map[string]any)
	v, _ := img["osbuild_version"].(string)
	return v
}

// CheckVersion returns a *VersionError when the image was built by another
// kib than running (or the build does not say by which).
func CheckVersion(t *Target, meta *kojimeta.Metadata, m *manifest.Manifest, running string) error {
	v, src := BuiltBy(t, meta, m)
	if v == running {
		return nil
	}
	if v == "" {
		v, src = "unknown", "neither the build metadata nor the manifest names it"
	}
	return &VersionError{Build: v, Running: running, Source: src}
}
