package stages

import (
	"context"
	"fmt"
	"path/filepath"
)

func init() { register[GrubEFI]("grub-efi") }

// GrubEFI checks its options when the manifest is decoded.
var _ validator = (*GrubEFI)(nil)

// GrubEFI builds a GRUB EFI image (grub-mkimage -O x86_64-efi) that boots
// the root file system's kernel, and copies it into the ESP at the removable
// media path /EFI/BOOT/BOOTX64.EFI, so firmware finds it without NVRAM
// entries. The ESP must already exist (esp stage).
type GrubEFI struct {
	// Filename is the disk file in the output directory.
	Filename string `json:"filename"`
	// ESPOffset is the byte offset of the ESP's FAT file system.
	ESPOffset uint64 `json:"esp_offset"`
	GrubConfig
}

// Validate checks the options.
func (o *GrubEFI) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if o.ESPOffset == 0 || o.ESPOffset%SectorSize != 0 {
		return optErr("esp_offset", "must be a positive multiple of 512, got %d", o.ESPOffset)
	}
	return o.GrubConfig.validate()
}

// Run builds the image and installs it.
func (o *GrubEFI) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.ESPOffset, SectorSize)
	if err != nil {
		return fmt.Errorf("grub-efi: %w", err)
	}
	if err := o.check(env); err != nil {
		return fmt.Errorf("grub-efi: %w", err)
	}
	efi := filepath.Join(env.Work, "BOOTX64.EFI")
	if err := o.mkimage(ctx, env, "x86_64-efi", efi); err != nil {
		return fmt.Errorf("grub-efi: %w", err)
	}
	return inPlace(disk, func(disk string) error {
		logger(env).Info("grub-efi: installing /EFI/BOOT/BOOTX64.EFI", "esp_offset", o.ESPOffset, "root_uuid", o.RootUUID)
		if err := mcopyFiles(ctx, env, disk, o.ESPOffset, map[string]string{"/EFI/BOOT/BOOTX64.EFI": efi}); err != nil {
			return fmt.Errorf("grub-efi: %w", err)
		}
		return nil
	})
}
