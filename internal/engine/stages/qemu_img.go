package stages

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/sparse"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("qemu-img", func(o *stageopt.QemuImg) Stage { return (*QemuImg)(o) })
}

// QemuImg is the qemu-img stage; its options are stageopt.QemuImg.
type QemuImg stageopt.QemuImg

// Run converts the file.
func (o *QemuImg) Run(ctx context.Context, env *Env) error {
	in, err := inputFile(env, o.Input, o.InputFilename)
	if err != nil {
		return fmt.Errorf("qemu-img: %w", err)
	}
	logger(env).Info("qemu-img: converting", "input", o.InputFilename, "format", o.Format, "output", o.Filename)
	return createAtomic(env.Out, o.Filename, func(f *os.File) error {
		switch o.Format {
		case "qcow2":
			args := []string{"convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1"}
			if o.Compress {
				args = append(args, "-c")
			}
			if _, err := run(ctx, env, hostcmd.Cmd{Path: "qemu-img", Args: append(args, in, f.Name())}); err != nil {
				return fmt.Errorf("qemu-img: %w", err)
			}
			return nil
		case "vpc":
			return o.vpc(ctx, env, in, f)
		default:
			return fmt.Errorf("qemu-img: format %q: want qcow2 or vpc", o.Format)
		}
	})
}

// vpc writes a fixed VHD: the raw disk, padded with zeros to a whole MiB,
// then the footer; the very bytes that qemu-img convert -O vpc -o
// subformat=fixed,force_size=on writes (TestQemuImgVPC compares them), with
// kib's time stamp and UUID in the footer. It copies the raw disk's data
// regions and hashes the file while it writes it, and gives the engine the
// digest (Env.Digest), so export need not read 4 GiB again.
func (o *QemuImg) vpc(ctx context.Context, env *Env, in string, f *os.File) error {
	src, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("qemu-img: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("qemu-img: %w", err)
	}
	size := (uint64(fi.Size()) + MiB - 1) / MiB * MiB
	footer, err := vhdFixedFooter(size, env.SourceDateEpoch, o.UUID)
	if err != nil {
		return fmt.Errorf("qemu-img: %w", err)
	}
	h := sha256.New()
	if err := sparse.Copy(ctx, f, src, int64(size), h); err != nil {
		return fmt.Errorf("qemu-img: %w", err)
	}
	if _, err := f.WriteAt(footer, int64(size)); err != nil {
		return fmt.Errorf("qemu-img: writing the footer: %w", err)
	}
	h.Write(footer)
	if env.Digest != nil {
		env.Digest(o.Filename, hex.EncodeToString(h.Sum(nil)))
	}
	return nil
}

// vhdFixedFooter is the footer of a fixed VHD of size bytes, as qemu-img
// writes it with force_size=on (creator "qem2", version 5.3, host "Wi2k",
// the largest CHS geometry, as the size and not the geometry gives the disk's
// size), with the time stamp sde and the UUID uuid.
func vhdFixedFooter(size uint64, sde int64, uuid string) ([]byte, error) {
	id, err := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
	if err != nil || len(id) != 16 {
		return nil, fmt.Errorf("vhd: uuid %q is not a UUID", uuid)
	}
	ft := VHDFooter{
		Cookie: [8]byte([]byte("conectix")), Features: 2, Version: 0x00010000, DataOffset: ^uint64(0),
		Timestamp:  uint32(min(max(sde-vhdEpoch, 0), int64(^uint32(0)))),
		CreatorApp: [4]byte([]byte("qem2")), CreatorVersion: 0x00050003, CreatorHostOS: [4]byte([]byte("Wi2k")),
		OriginalSize: size, CurrentSize: size, Cylinders: 65535, Heads: 16, SectorsPerTrk: 255, DiskType: VHDFixed,
	}
	copy(ft.UUID[:], id)
	buf, err := binary.Append(nil, binary.BigEndian, ft)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(buf[64:], vhdChecksum(buf))
	return buf, nil
}

// VHDFooter is the 512-byte footer of a VHD file (Microsoft's "Virtual Hard
// Disk Image Format Specification"), fields as stored (big-endian).
type VHDFooter struct {
	Cookie         [8]byte
	Features       uint32
	Version        uint32
	DataOffset     uint64
	Timestamp      uint32 // seconds since 2000-01-01 00:00:00 UTC
	CreatorApp     [4]byte
	CreatorVersion uint32
	CreatorHostOS  [4]byte
	OriginalSize   uint64
	CurrentSize    uint64
	Cylinders      uint16
	Heads          uint8
	SectorsPerTrk  uint8
	DiskType       uint32 // 2 fixed, 3 dynamic, 4 differencing
	Checksum       uint32
	UUID           [16]byte
	SavedState     uint8
	Reserved       [427]byte
}

// VHD disk types.
const (
	VHDFixed   = 2
	VHDDynamic = 3
)

// vhdEpoch is 2000-01-01 00:00:00 UTC in Unix time.
const vhdEpoch = 946684800

// ReadVHDFooter reads and checks the footer at the end of a VHD file: the
// cookie and the checksum.
func ReadVHDFooter(f interface {
	ReadAt([]byte, int64) (int, error)
	Stat() (os.FileInfo, error)
}) (*VHDFooter, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < SectorSize {
		return nil, fmt.Errorf("vhd: file of %d bytes has no footer", fi.Size())
	}
	buf := make([]byte, SectorSize)
	if _, err := f.ReadAt(buf, fi.Size()-SectorSize); err != nil {
		return nil, fmt.Errorf("vhd: reading footer: %w", err)
	}
	var ft VHDFooter
	if _, err := binary.Decode(buf, binary.BigEndian, &ft); err != nil {
		return nil, fmt.Errorf("vhd: decoding footer: %w", err)
	}
	if string(ft.Cookie[:]) != "conectix" {
		return nil, fmt.Errorf("vhd: footer cookie is %q, want \"conectix\"", ft.Cookie[:])
	}
	if want := vhdChecksum(buf); ft.Checksum != want {
		return nil, fmt.Errorf("vhd: footer checksum 0x%08x, want 0x%08x", ft.Checksum, want)
	}
	return &ft, nil
}

// vhdChecksum is the one's complement of the sum of the footer's bytes,
// the checksum field (64..67) excluded.
func vhdChecksum(footer []byte) uint32 {
	var sum uint32
	for i, b := range footer {
		if i >= 64 && i < 68 {
			continue
		}
		sum += uint32(b)
	}
	return ^sum
}
