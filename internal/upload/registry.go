package upload

import (
	"fmt"
	"sort"
	"strings"
)

// Uploaders maps target names (TargetAWS, ...) to the uploader that serves
// them. A target that is not in the map is not supported by this kib: the
// compose API refuses it at POST and `kib upload` before it reads the image.
// The nil map supports nothing.
type Uploaders map[string]Uploader

// ErrUnsupported is wrapped by For when a target has no uploader.
var ErrUnsupported = fmt.Errorf("upload target not supported")

// For returns the uploader of target.
func (u Uploaders) For(target string) (Uploader, error) {
	if up, ok := u[target]; ok && up != nil {
		return up, nil
	}
	if len(u) == 0 {
		return nil, fmt.Errorf("%q: %w: no upload targets are configured", target, ErrUnsupported)
	}
	return nil, fmt.Errorf("%q: %w; configured targets: %s", target, ErrUnsupported, strings.Join(u.Targets(), ", "))
}

// Supports reports whether target has an uploader.
func (u Uploaders) Supports(target string) bool {
	_, err := u.For(target)
	return err == nil
}

// Targets lists the supported target names, sorted.
func (u Uploaders) Targets() []string {
	out := make([]string, 0, len(u))
	for t, up := range u {
		if up != nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// TargetFor is the default target of a kib image type: the cloud its format
// is made for (ami → aws, vhd → azure, gce → gcp, container → container),
// and aws.s3 for any other disk or archive. It is "" for an unknown type.
func TargetFor(imageType string) string {
	switch imageType {
	case "ami":
		return TargetAWS
	case "vhd":
		return TargetAzure
	case "gce":
		return TargetGCP
	case "container":
		return TargetContainer
	case "qcow2", "raw", "vmdk", "tar":
		return TargetAWSS3
	}
	return ""
}

// Allowed reports whether an image of imageType may be uploaded to target,
// with the composer's rule: each image type only to its own cloud; plain
// disks and archives to aws.s3.
func Allowed(imageType, target string) bool {
	return target != "" && TargetFor(imageType) == target
}

// OSBuildTargetName is composer's name of a target's result, as Koji
// metadata's upload_target_results use it (e.g. "org.osbuild.aws").
func OSBuildTargetName(target string) string {
	if target == TargetAzure {
		return "org.osbuild.azure.image"
	}
	return "org.osbuild." + target
}
