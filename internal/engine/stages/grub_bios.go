package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("grub-bios", func(o *stageopt.GrubBIOS) Stage { return (*GrubBIOS)(o) })
}

// Offsets in GRUB's i386-pc boot.img (the MBR code) and core.img
// (diskboot.img is its first sector), as grub-bios-setup uses them.
const (
	bootBPBStart      = 0x03  // boot.img: start of the BPB kept from the disk
	bootBPBEnd        = 0x5a  // boot.img: end of the BPB
	bootKernelSector  = 0x5c  // boot.img: u64 LBA of core.img's first sector
	bootDriveCheck    = 0x66  // boot.img: jmp over the boot drive check
	bootCodeEnd       = 440   // boot.img code ends here; the MBR table follows
	coreBlocklist     = 0x1f4 // core.img: u64 LBA of the rest of core.img
	coreBlocklistLen  = 0x1fc // core.img: u16 sectors in the rest of core.img
	defaultBootImg    = "/usr/lib/grub/i386-pc/boot.img"
	mbrSignatureStart = 510
)

// GrubBIOS is the grub-bios stage; its options are stageopt.GrubBIOS.
type GrubBIOS stageopt.GrubBIOS

// Run builds core.img and installs it and boot.img.
func (o *GrubBIOS) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.Offset, o.Size)
	if err != nil {
		return fmt.Errorf("grub-bios: %w", err)
	}
	if err := (*grub)(&o.GrubConfig).check(env); err != nil {
		return fmt.Errorf("grub-bios: %w", err)
	}
	corePath := filepath.Join(env.Work, "core.img")
	if err := (*grub)(&o.GrubConfig).mkimage(ctx, env, "i386-pc", corePath, "biosdisk"); err != nil {
		return fmt.Errorf("grub-bios: %w", err)
	}
	core, err := os.ReadFile(corePath)
	if err != nil {
		return fmt.Errorf("grub-bios: %w", err)
	}
	boot, err := os.ReadFile(filepath.Join(env.BuildRoot, defaultBootImg))
	if err != nil {
		return fmt.Errorf("grub-bios: boot.img (package grub-pc-bin): %w", err)
	}
	return inPlace(disk, func(disk string) error {
		logger(env).Info("grub-bios: installing core.img and boot.img", "offset", o.Offset, "core_bytes", len(core))
		f, err := os.OpenFile(disk, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("grub-bios: %w", err)
		}
		defer f.Close()
		if err := installGrubBIOS(f, boot, core, o.Offset, o.Size); err != nil {
			return fmt.Errorf("grub-bios: %w", err)
		}
		return f.Close()
	})
}

// diskRW is what installGrubBIOS needs of the disk.
type diskRW interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// installGrubBIOS writes core into the partition at offset (size bytes)
// and boot's code into sector 0 of disk.
func installGrubBIOS(disk diskRW, boot, core []byte, offset, size uint64) error {
	if len(boot) != SectorSize {
		return fmt.Errorf("boot.img is %d bytes, want %d", len(boot), SectorSize)
	}
	if boot[bootDriveCheck] != 0xeb {
		return fmt.Errorf("boot.img: no jmp (0xeb) at the drive check offset 0x%x, got 0x%02x", bootDriveCheck, boot[bootDriveCheck])
	}
	if len(core) < 2*SectorSize {
		return fmt.Errorf("core.img is only %d bytes", len(core))
	}
	if uint64(len(core)) > size {
		return fmt.Errorf("core.img is %d bytes, larger than the %d-byte BIOS boot partition", len(core), size)
	}
	rest := (len(core) - SectorSize + SectorSize - 1) / SectorSize
	if got := int(binary.LittleEndian.Uint16(core[coreBlocklistLen:])); got != rest {
		return fmt.Errorf("core.img: blocklist length %d, want %d sectors", got, rest)
	}
	sector := offset / SectorSize
	c := bytes.Clone(core)
	binary.LittleEndian.PutUint64(c[coreBlocklist:], sector+1)
	if _, err := disk.WriteAt(c, int64(offset)); err != nil {
		return fmt.Errorf("writing core.img: %w", err)
	}
	mbr := make([]byte, SectorSize)
	if _, err := disk.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the MBR: %w", err)
	}
	if mbr[mbrSignatureStart] != 0x55 || mbr[mbrSignatureStart+1] != 0xaa {
		return fmt.Errorf("sector 0 has no MBR signature (run the gpt stage first)")
	}
	code := bytes.Clone(boot[:bootCodeEnd])
	copy(code[bootBPBStart:bootBPBEnd], mbr[bootBPBStart:bootBPBEnd])
	binary.LittleEndian.PutUint64(code[bootKernelSector:], sector)
	code[bootDriveCheck], code[bootDriveCheck+1] = 0x90, 0x90
	if _, err := disk.WriteAt(code, 0); err != nil {
		return fmt.Errorf("writing boot.img: %w", err)
	}
	return nil
}
