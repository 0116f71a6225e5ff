package stageopt

import (
	"fmt"
	"regexp"
	"strings"
)

// Sizes used by the disk stages.
const (
	SectorSize = 512
	MiB        = 1 << 20
	// GPTTrailer is the space the backup GPT takes at the end of a disk
	// (128 entries of 128 bytes plus the header sector).
	GPTTrailer = 33 * SectorSize
)

// Partition type GUIDs for the layouts kib builds.
const (
	GPTTypeBIOSBoot    = "21686148-6449-6E6F-744E-656564454649"
	GPTTypeESP         = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GPTTypeRootX86_64  = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	GPTTypeLinuxData   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GPTTypeLinuxBootXB = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
)

// OptionError reports a stage option that breaks a rule. Field is the option's
// JSON path (for example "partitions[1].start").
type OptionError struct {
	Field string
	Rule  string
}

func (e *OptionError) Error() string { return e.Field + ": " + e.Rule }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Rule: fmt.Sprintf(format, args...)}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func checkUUID(field, v string) error {
	if !uuidRE.MatchString(v) {
		return optErr(field, "must be a UUID like 01234567-89ab-cdef-0123-456789abcdef, got %q", v)
	}
	return nil
}

// checkFilename accepts a plain file name: no directories, no dot files, no
// control characters.
func checkFilename(field, v string) error {
	if v == "" {
		return optErr(field, "is required")
	}
	if strings.ContainsAny(v, "/\x00") || v == "." || v == ".." || strings.HasPrefix(v, ".") {
		return optErr(field, "must be a plain file name without '/' that does not start with '.', got %q", v)
	}
	return nil
}

func checkPipelineName(field, v string, required bool) error {
	if v == "" {
		if required {
			return optErr(field, "is required")
		}
		return nil
	}
	if strings.ContainsAny(v, "/\x00") {
		return optErr(field, "must be a pipeline name, got %q", v)
	}
	return nil
}

// checkExtent checks a partition given by byte offset and size.
func checkExtent(prefix string, offset, size, align uint64) error {
	if offset == 0 || offset%align != 0 {
		return optErr(prefix+"offset", "must be a positive multiple of %d, got %d", align, offset)
	}
	if size == 0 || size%align != 0 {
		return optErr(prefix+"size", "must be a positive multiple of %d, got %d", align, size)
	}
	return nil
}

// Extent is a byte range of a disk.
type Extent struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
}

// LayoutPartitions places partitions of the given sizes (bytes) one after
// another on a disk of diskSize bytes, the first at 1 MiB, each start aligned
// to 1 MiB. A size of 0, allowed only for the last partition, takes the rest
// of the disk up to the backup GPT, rounded down to 1 MiB.
func LayoutPartitions(diskSize uint64, sizes []uint64) ([]Extent, error) {
	if diskSize < 2*MiB || diskSize%MiB != 0 {
		return nil, optErr("size", "must be a multiple of 1 MiB and at least 2 MiB, got %d", diskSize)
	}
	out := make([]Extent, len(sizes))
	pos := uint64(MiB)
	for i, sz := range sizes {
		if sz == 0 {
			if i != len(sizes)-1 {
				return nil, optErr(fmt.Sprintf("sizes[%d]", i), "only the last partition may fill the disk (size 0)")
			}
			end := (diskSize - GPTTrailer) / MiB * MiB
			if end <= pos {
				return nil, optErr("size", "disk of %d bytes has no room left for partition %d", diskSize, i)
			}
			sz = end - pos
		}
		if pos+sz > diskSize-GPTTrailer {
			return nil, optErr("size", "disk of %d bytes is too small: partition %d ends at byte %d", diskSize, i, pos+sz)
		}
		out[i] = Extent{Start: pos, Size: sz}
		pos = (pos + sz + MiB - 1) / MiB * MiB
	}
	return out, nil
}
