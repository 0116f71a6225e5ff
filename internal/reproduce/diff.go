package reproduce

import (
	"fmt"
	"strings"
)

// Difference says where two images first differ.
type Difference struct {
	// Member is the file inside an archive that holds the disk image the
	// rest refers to ("disk.raw" of a GCE tarball), if any.
	Member string
	// Partition is the 1-based number of the GPT partition holding the
	// first difference, 0 if it is not in a partition; PartitionName is its
	// name and FS its file system ("ext4", "vfat", "").
	Partition     int
	PartitionName string
	FS            string
	// Offset is the byte offset of the first difference: in the partition
	// when Partition is set, else in the (uncompressed) disk or file.
	Offset int64
	// Entry is the first differing file-system entry ("./etc/motd"), when
	// known.
	Entry string
	// Detail says what differs.
	Detail string
}

// String renders the difference on one line, most specific place first.
func (d *Difference) String() string {
	var parts []string
	if d.Entry != "" {
		parts = append(parts, d.Entry)
	}
	if d.Partition > 0 {
		p := fmt.Sprintf("partition %d", d.Partition)
		if d.PartitionName != "" {
			p += fmt.Sprintf(" %q", d.PartitionName)
		}
		if d.FS != "" {
			p += " (" + d.FS + ")"
		}
		parts = append(parts, fmt.Sprintf("%s at byte %d", p, d.Offset))
	} else if d.Entry == "" || d.Member != "" {
		parts = append(parts, fmt.Sprintf("byte %d", d.Offset))
	}
	if d.Member != "" {
		parts = append(parts, "in "+d.Member)
	}
	s := strings.Join(parts, ", ")
	if d.Detail != "" {
		s += ": " + d.Detail
	}
	return s
}
