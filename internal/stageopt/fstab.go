package stageopt

import (
	"fmt"
	"regexp"
	"strings"
)

// Fstab checks its options when the manifest is decoded.
var _ validator = (*Fstab)(nil)

// Fstab writes /etc/fstab into the tree being built, naming each file system
// by UUID or label so the image does not depend on device names.
type Fstab struct {
	// Entries in file order; at least one.
	Entries []FstabEntry `json:"entries"`
}

func init() { register[Fstab]("fstab") }

// FstabEntry is one line of /etc/fstab. Exactly one of UUID and Label is set.
type FstabEntry struct {
	UUID  string `json:"uuid,omitempty"`
	Label string `json:"label,omitempty"`
	// Path is the mount point ("/", "/boot/efi") or "none" for swap.
	Path string `json:"path"`
	// VFSType is the file system type (ext4, vfat, swap).
	VFSType string `json:"vfs_type"`
	// Options are the mount options; empty means "defaults".
	Options string `json:"options,omitempty"`
	// Freq is the dump frequency and PassNo the fsck order (0, 1 or 2).
	Freq   int `json:"freq,omitempty"`
	PassNo int `json:"passno,omitempty"`
}

var fstabWordRE = regexp.MustCompile(`^[^\s#]+$`)

// Validate checks the options.
func (o *Fstab) Validate() error {
	if len(o.Entries) == 0 {
		return optErr("entries", "must have at least one entry")
	}
	for i, e := range o.Entries {
		f := fmt.Sprintf("entries[%d].", i)
		switch {
		case e.UUID != "" && e.Label != "":
			return optErr(f+"uuid", "and label are exclusive")
		case e.UUID != "":
			// FAT volume IDs (XXXX-XXXX) are allowed as well as UUIDs.
			if !fstabWordRE.MatchString(e.UUID) {
				return optErr(f+"uuid", "must be a single word, got %q", e.UUID)
			}
		case e.Label != "":
			if !fstabWordRE.MatchString(e.Label) {
				return optErr(f+"label", "must be a single word, got %q", e.Label)
			}
		default:
			return optErr(f+"uuid", "or label is required")
		}
		if e.Path != "none" && !strings.HasPrefix(e.Path, "/") || !fstabWordRE.MatchString(e.Path) {
			return optErr(f+"path", "must be an absolute path without spaces or \"none\", got %q", e.Path)
		}
		if !fstabWordRE.MatchString(e.VFSType) {
			return optErr(f+"vfs_type", "must be a single word, got %q", e.VFSType)
		}
		if e.Options != "" && !fstabWordRE.MatchString(e.Options) {
			return optErr(f+"options", "must be a comma-separated list without spaces, got %q", e.Options)
		}
		if e.Freq < 0 {
			return optErr(f+"freq", "must not be negative, got %d", e.Freq)
		}
		if e.PassNo < 0 || e.PassNo > 2 {
			return optErr(f+"passno", "must be 0, 1 or 2, got %d", e.PassNo)
		}
	}
	return nil
}
