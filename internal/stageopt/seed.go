package stageopt

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// seedBytes derives 32 bytes from seed and purpose. Different purposes give
// unrelated values; the same pair always gives the same bytes.
func seedBytes(seed int64, purpose string) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h := sha256.New()
	h.Write([]byte("kib seed v1\x00"))
	h.Write(b[:])
	h.Write([]byte(purpose))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// UUIDFromSeed returns a lower-case RFC 4122 version-4-shaped UUID derived
// from seed and purpose (for example "disk", "partition-root",
// "fs-root"). It is deterministic: the manifest generator uses it for every
// disk GUID, partition GUID, file system UUID and hash seed.
func UUIDFromSeed(seed int64, purpose string) string {
	s := seedBytes(seed, purpose)
	u := s[:16]
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// VolumeIDFromSeed returns an 8-digit upper-case hex FAT volume ID derived
// from seed and purpose.
func VolumeIDFromSeed(seed int64, purpose string) string {
	s := seedBytes(seed, purpose)
	return fmt.Sprintf("%08X", binary.BigEndian.Uint32(s[:4]))
}
