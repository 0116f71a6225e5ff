package stageopt

import (
	"fmt"
	"regexp"
)

// ESP checks its options when the manifest is decoded.
var _ validator = (*ESP)(nil)

// ESP makes a FAT file system inside a partition of the disk file with
// mkfs.vfat --offset (no copy) and creates directories in it with mtools.
// mkfs.vfat runs with --invariant and a fixed volume ID, and mtools stamps
// files with SOURCE_DATE_EPOCH, so the result is the same on every build.
// FAT cannot be mounted on kib's build hosts; the boot loader stages fill it
// with mtools too.
type ESP struct {
	// Filename is the disk file in the output directory (made by gpt).
	Filename string `json:"filename"`
	// Offset and Size are the partition's byte range, multiples of 512.
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	// VolumeID is the FAT serial number, 8 hex digits (see VolumeIDFromSeed).
	VolumeID string `json:"volume_id"`
	// Label is the volume label: at most 11 characters of [A-Z0-9_-].
	Label string `json:"label,omitempty"`
	// FATSize is 12, 16 or 32; 0 means 32. FAT32 needs at least 33 MiB.
	FATSize int `json:"fat_size,omitempty"`
	// Directories to create, parents first, e.g. "/EFI", "/EFI/BOOT".
	Directories []string `json:"directories,omitempty"`
}

func init() { register[ESP]("esp") }

var (
	volumeIDRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}$`)
	fatLabelRE = regexp.MustCompile(`^[A-Z0-9_-]{0,11}$`)
	fatPathRE  = regexp.MustCompile(`^(/[A-Za-z0-9_.-]+)+$`)
)

// Validate checks the options.
func (o *ESP) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if err := checkExtent("", o.Offset, o.Size, SectorSize); err != nil {
		return err
	}
	if !volumeIDRE.MatchString(o.VolumeID) {
		return optErr("volume_id", "must be 8 hex digits, got %q", o.VolumeID)
	}
	if !fatLabelRE.MatchString(o.Label) {
		return optErr("label", "must be at most 11 characters of [A-Z0-9_-], got %q", o.Label)
	}
	switch o.FATSize {
	case 0, 32:
		if o.Size < 33*MiB {
			return optErr("size", "must be at least 33 MiB for FAT32, got %d", o.Size)
		}
	case 12, 16:
	default:
		return optErr("fat_size", "must be 12, 16 or 32, got %d", o.FATSize)
	}
	for i, d := range o.Directories {
		if !fatPathRE.MatchString(d) {
			return optErr(fmt.Sprintf("directories[%d]", i), "must be an absolute path of [A-Za-z0-9_.-] components, got %q", d)
		}
	}
	return nil
}
