package stageopt

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// GPT checks its options when the manifest is decoded.
var _ validator = (*GPT)(nil)

// GPT creates a sparse disk image file of Size bytes in the pipeline's
// output directory and writes a GUID partition table to it with sfdisk. Every
// GUID is given, so the table is the same on every build.
//
// sfdisk is used rather than a Go writer: it is the reference implementation
// the tests read the table back with, it is already a build dependency, and
// with a fixed script, label-id and partition UUIDs its output is
// deterministic.
type GPT struct {
	// Filename is the disk image to create in the output directory.
	Filename string `json:"filename"`
	// Size is the disk size in bytes, a multiple of 1 MiB.
	Size uint64 `json:"size"`
	// UUID is the disk GUID (sfdisk's label-id).
	UUID string `json:"uuid"`
	// Partitions in table order; at least one, at most 128.
	Partitions []GPTPartition `json:"partitions"`
}

func init() { register[GPT]("gpt") }

// GPTPartition is one entry of a GPT. Start and Size are in bytes, multiples
// of 512; the partition must end before the backup GPT (the last 33
// sectors).
type GPTPartition struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
	// Type is the partition type GUID (see the GPTType constants).
	Type string `json:"type"`
	// UUID is the unique partition GUID.
	UUID string `json:"uuid"`
	// Name is the partition label: at most 36 characters of [A-Za-z0-9 ._-].
	Name string `json:"name,omitempty"`
	// LegacyBIOSBootable sets GPT attribute bit 2.
	LegacyBIOSBootable bool `json:"legacy_bios_bootable,omitempty"`
}

var gptNameRE = regexp.MustCompile(`^[A-Za-z0-9 ._-]{0,36}$`)

// Validate checks the options.
func (o *GPT) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if o.Size == 0 || o.Size%MiB != 0 {
		return optErr("size", "must be a positive multiple of 1 MiB (1048576), got %d", o.Size)
	}
	if err := checkUUID("uuid", o.UUID); err != nil {
		return err
	}
	if len(o.Partitions) == 0 || len(o.Partitions) > 128 {
		return optErr("partitions", "must have 1 to 128 entries, got %d", len(o.Partitions))
	}
	seen := map[string]string{strings.ToLower(o.UUID): "uuid"}
	type span struct {
		start, end uint64
		idx        int
	}
	var spans []span
	for i, p := range o.Partitions {
		f := fmt.Sprintf("partitions[%d].", i)
		if p.Start < 34*SectorSize || p.Start%SectorSize != 0 {
			return optErr(f+"start", "must be a multiple of 512 at or after byte %d (LBA 34), got %d", 34*SectorSize, p.Start)
		}
		if p.Size == 0 || p.Size%SectorSize != 0 {
			return optErr(f+"size", "must be a positive multiple of 512, got %d", p.Size)
		}
		if p.Start+p.Size > o.Size-GPTTrailer {
			return optErr(f+"size", "partition ends at byte %d, after the last usable byte %d of a %d-byte disk", p.Start+p.Size, o.Size-GPTTrailer, o.Size)
		}
		if err := checkUUID(f+"type", p.Type); err != nil {
			return err
		}
		if err := checkUUID(f+"uuid", p.UUID); err != nil {
			return err
		}
		if prev, dup := seen[strings.ToLower(p.UUID)]; dup {
			return optErr(f+"uuid", "must be unique, same as %s", prev)
		}
		seen[strings.ToLower(p.UUID)] = f + "uuid"
		if !gptNameRE.MatchString(p.Name) {
			return optErr(f+"name", "must be at most 36 characters of [A-Za-z0-9 ._-], got %q", p.Name)
		}
		spans = append(spans, span{p.Start, p.Start + p.Size, i})
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a].start < spans[b].start })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return optErr(fmt.Sprintf("partitions[%d]", spans[i].idx), "overlaps partitions[%d]", spans[i-1].idx)
		}
	}
	return nil
}
