package reproduce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// sectorSize is the logical sector size of kib's disk images.
const sectorSize = 512

// Partition is one entry of a GPT.
type Partition struct {
	// Number is the 1-based index in the partition entry array.
	Number int
	Name   string
	// Type is the partition type GUID in its usual text form.
	Type string
	// Start and End are byte offsets: the partition is [Start, End).
	Start, End int64
}

// ReadGPT reads the primary GUID partition table of a disk of size bytes
// with 512-byte sectors, checking the header and entry array CRCs and that
// every partition lies on the disk.
func ReadGPT(r io.ReaderAt, size int64) ([]Partition, error) {
	hdr := make([]byte, sectorSize)
	if _, err := r.ReadAt(hdr, sectorSize); err != nil {
		return nil, fmt.Errorf("gpt header: %w", err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return nil, errors.New("gpt header: no \"EFI PART\" signature at LBA 1")
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || hsize > sectorSize {
		return nil, fmt.Errorf("gpt header: size %d is not in 92..512", hsize)
	}
	sum := binary.LittleEndian.Uint32(hdr[16:])
	h := bytes.Clone(hdr[:hsize])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != sum {
		return nil, errors.New("gpt header: CRC32 mismatch")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	esum := binary.LittleEndian.Uint32(hdr[88:])
	if esize < 128 || esize > 1024 || esize%8 != 0 {
		return nil, fmt.Errorf("gpt header: partition entry size %d is not a multiple of 8 in 128..1024", esize)
	}
	if count == 0 || count > 1024 {
		return nil, fmt.Errorf("gpt header: %d partition entries, want 1..1024", count)
	}
	arrSize := int64(count) * int64(esize)
	if entriesLBA < 2 || entriesLBA > uint64(size/sectorSize) || int64(entriesLBA)*sectorSize+arrSize > size {
		return nil, fmt.Errorf("gpt header: partition entries at LBA %d do not fit on a %d-byte disk", entriesLBA, size)
	}
	arr := make([]byte, arrSize)
	if _, err := r.ReadAt(arr, int64(entriesLBA)*sectorSize); err != nil {
		return nil, fmt.Errorf("gpt entries: %w", err)
	}
	if crc32.ChecksumIEEE(arr) != esum {
		return nil, errors.New("gpt entries: CRC32 mismatch")
	}
	var parts []Partition
	for i := range int(count) {
		e := arr[i*int(esize) : (i+1)*int(esize)]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		if first > last || last >= uint64(size/sectorSize) {
			return nil, fmt.Errorf("gpt entry %d: LBAs %d..%d are not on a %d-byte disk", i+1, first, last, size)
		}
		name := make([]uint16, 36)
		for j := range name {
			name[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		if k := indexZero(name); k >= 0 {
			name = name[:k]
		}
		parts = append(parts, Partition{Number: i + 1, Name: string(utf16.Decode(name)), Type: guidString(e[:16]),
			Start: int64(first) * sectorSize, End: (int64(last) + 1) * sectorSize})
	}
	return parts, nil
}

func indexZero(s []uint16) int {
	for i, v := range s {
		if v == 0 {
			return i
		}
	}
	return -1
}

// guidString formats a GPT's mixed-endian GUID.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// fsType recognises the file system at the start of a partition.
func fsType(r io.ReaderAt, start int64) string {
	sb := make([]byte, 2048)
	if n, _ := r.ReadAt(sb, start); n < len(sb) {
		return ""
	}
	switch {
	case binary.LittleEndian.Uint16(sb[1024+56:]) == 0xef53:
		return "ext4"
	case bytes.Equal(sb[82:87], []byte("FAT32")), bytes.Equal(sb[54:59], []byte("FAT16")), bytes.Equal(sb[54:59], []byte("FAT12")):
		return "vfat"
	}
	return ""
}
