// Package upload sends built images to their cloud targets. Each target is a
// sub-package (aws, awss3, azure, gcp, container) with one Uploader; this
// package holds what they share: the artifact, the result and the target
// names as the Cloud API spells them.
package upload

import (
	"context"
	"encoding/json"
)

// Target names as the Cloud API's upload_options and upload_status use them.
const (
	TargetAWS       = "aws"
	TargetAWSS3     = "aws.s3"
	TargetGCP       = "gcp"
	TargetAzure     = "azure"
	TargetContainer = "container"
)

// Artifact is a built image, as its build-info.json describes it.
type Artifact struct {
	Path      string // the image file on disk
	Filename  string // the name it is published under (e.g. disk.vhd)
	ImageType string // kib image type: ami, vhd, gce, qcow2, raw, tar, container
	Arch      string // x86_64, aarch64
	BootMode  string // none, legacy, uefi, hybrid
	SHA256    string // lower-case hex of the file's bytes
	Size      int64
	Distro    string // kib distro name, e.g. debian-12 (container default name)
}

// Result is what one target reports back: the options half of composer's
// upload_status ({"type": ..., "status": ..., "options": {...}}), e.g.
// {"ami": "ami-...", "region": "..."} for aws or {"url": "..."} for aws.s3.
type Result struct {
	Type    string         `json:"type"`
	Options map[string]any `json:"options"`
}

// Progress receives the bytes sent so far out of total; it may be nil.
type Progress func(sent, total int64)

// Uploader uploads one artifact with a target's upload_options (the JSON
// object of the Cloud API, validated by the uploader: unknown or missing
// fields are errors that name the field).
type Uploader interface {
	Upload(ctx context.Context, a Artifact, options json.RawMessage, progress Progress) (Result, error)
}
