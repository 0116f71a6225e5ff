package stageopt

import "strings"

// Ext4 checks its options when the manifest is decoded.
var _ validator = (*Ext4)(nil)

// Ext4 makes an ext4 file system from an input tree directly inside a
// partition of the disk file (mkfs.ext4 -d with -E offset=, no copy), then
// sets every used inode's atime and ctime to SOURCE_DATE_EPOCH with debugfs.
// mke2fs copies those from the source files, and ctime cannot be set on the
// source, so without this two extractions of the same tree give different
// images. Superblock times and crtimes come from E2FSPROGS_FAKE_TIME; mtimes
// are copied from the tree, clamped to SOURCE_DATE_EPOCH (a directory that a
// customization touched after the packages were installed would otherwise
// carry the build's time).
type Ext4 struct {
	// Filename is the disk file in the output directory (made by gpt).
	Filename string `json:"filename"`
	// Source names the tree pipeline whose root becomes the file system.
	Source string `json:"source"`
	// Offset and Size are the partition's byte range, multiples of 4096.
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	// UUID is the file system UUID; HashSeed the directory hash seed (a UUID).
	UUID     string `json:"uuid"`
	HashSeed string `json:"hash_seed"`
	// Label is the volume label, at most 16 bytes.
	Label string `json:"label,omitempty"`
}

func init() { register[Ext4]("ext4") }

// Validate checks the options.
func (o *Ext4) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if err := checkPipelineName("source", o.Source, true); err != nil {
		return err
	}
	if err := checkExtent("", o.Offset, o.Size, 4096); err != nil {
		return err
	}
	if err := checkUUID("uuid", o.UUID); err != nil {
		return err
	}
	if err := checkUUID("hash_seed", o.HashSeed); err != nil {
		return err
	}
	if len(o.Label) > 16 || strings.ContainsAny(o.Label, "\x00\n") {
		return optErr("label", "must be at most 16 bytes without NUL or newline, got %q", o.Label)
	}
	return nil
}
