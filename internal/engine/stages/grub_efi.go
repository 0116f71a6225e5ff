package stages

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("grub-efi", func(o *stageopt.GrubEFI) Stage { return (*GrubEFI)(o) })
}

// GrubEFI is the grub-efi stage; its options are stageopt.GrubEFI.
type GrubEFI stageopt.GrubEFI

// Run builds the image and installs it.
func (o *GrubEFI) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.ESPOffset, SectorSize)
	if err != nil {
		return fmt.Errorf("grub-efi: %w", err)
	}
	if err := (*grub)(&o.GrubConfig).check(env); err != nil {
		return fmt.Errorf("grub-efi: %w", err)
	}
	efi := filepath.Join(env.Work, "BOOTX64.EFI")
	if err := (*grub)(&o.GrubConfig).mkimage(ctx, env, "x86_64-efi", efi); err != nil {
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
