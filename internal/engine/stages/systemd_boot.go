package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("systemd-boot", func(o *stageopt.SystemdBoot) Stage { return (*SystemdBoot)(o) })
}

// hostSystemdBoot is systemd-boot's EFI binary on Debian (package
// systemd-boot-efi), relative to a root.
const hostSystemdBoot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// SystemdBoot is the systemd-boot stage; its options are stageopt.SystemdBoot.
type SystemdBoot stageopt.SystemdBoot

// Run installs the boot loader, its configuration, the kernel and initrd.
func (o *SystemdBoot) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.ESPOffset, SectorSize)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	if err := (*grub)(&o.GrubConfig).check(env); err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	root, err := env.Input(o.Source)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	kernel, initrd := (*grub)(&o.GrubConfig).paths()
	hostKernel, err := treePath(root, kernel)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	hostInitrd, err := treePath(root, initrd)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	efi := filepath.Join(root, hostSystemdBoot)
	if _, err := os.Stat(efi); err != nil {
		// The build root's, or the host's without one.
		efi = filepath.Join("/", env.BuildRoot, hostSystemdBoot)
		if _, err := os.Stat(efi); err != nil {
			return fmt.Errorf("systemd-boot: %s is neither in tree %s nor in the build root or on the host (package systemd-boot-efi)", hostSystemdBoot, o.Source)
		}
	}
	title := o.Title
	if title == "" {
		title = "Debian"
	}
	loaderConf, err := writeScratch(env, "loader.conf", []byte("default kib.conf\ntimeout 0\n"))
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	_, cmdline := (*grub)(&o.GrubConfig).kernelCmdline()
	entry, err := writeScratch(env, "kib.conf", fmt.Appendf(nil, "title %s\nlinux /kib/vmlinuz\ninitrd /kib/initrd.img\noptions %s\n", title, cmdline))
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	files := map[string]string{
		"/EFI/BOOT/BOOTX64.EFI":            efi,
		"/EFI/systemd/systemd-bootx64.efi": efi,
		"/loader/loader.conf":              loaderConf,
		"/loader/entries/kib.conf":         entry,
		"/kib/vmlinuz":                     hostKernel,
		"/kib/initrd.img":                  hostInitrd,
	}
	return inPlace(disk, func(disk string) error {
		logger(env).Info("systemd-boot: installing", "esp_offset", o.ESPOffset, "binary", efi, "root_uuid", o.RootUUID)
		if err := mcopyFiles(ctx, env, disk, o.ESPOffset, files); err != nil {
			return fmt.Errorf("systemd-boot: %w", err)
		}
		return nil
	})
}
