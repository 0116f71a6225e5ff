package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

func init() { register[SystemdBoot]("systemd-boot") }

// SystemdBoot checks its options when the manifest is decoded.
var _ validator = (*SystemdBoot)(nil)

// hostSystemdBoot is systemd-boot's EFI binary on Debian (package
// systemd-boot-efi), relative to a root.
const hostSystemdBoot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// SystemdBoot installs systemd-boot into the ESP for UEFI boot, with one
// loader entry: the kernel and initrd, copied from the root tree into the
// ESP under /kib/, and the kernel command line. The binary comes from the
// tree when it holds systemd-boot-efi, else from the build root (the host
// without one). It is an
// alternative to grub-efi; both write /EFI/BOOT/BOOTX64.EFI. Kernel
// upgrades inside the booted system do not update the ESP's copies.
type SystemdBoot struct {
	// Filename is the disk file in the output directory.
	Filename string `json:"filename"`
	// ESPOffset is the byte offset of the ESP's FAT file system.
	ESPOffset uint64 `json:"esp_offset"`
	// Title is the menu entry's title; empty means "Debian".
	Title string `json:"title,omitempty"`
	// Source, RootUUID, Kernel, Initrd and KernelOptions are as for GRUB.
	GrubConfig
}

var titleRE = regexp.MustCompile(`^[A-Za-z0-9 ._()+-]{0,64}$`)

// Validate checks the options.
func (o *SystemdBoot) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if o.ESPOffset == 0 || o.ESPOffset%SectorSize != 0 {
		return optErr("esp_offset", "must be a positive multiple of 512, got %d", o.ESPOffset)
	}
	if !titleRE.MatchString(o.Title) {
		return optErr("title", "must be at most 64 characters of [A-Za-z0-9 ._()+-], got %q", o.Title)
	}
	return o.GrubConfig.validate()
}

// Run installs the boot loader, its configuration, the kernel and initrd.
func (o *SystemdBoot) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.ESPOffset, SectorSize)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	if err := o.check(env); err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	root, err := env.Input(o.Source)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	kernel, initrd := o.paths()
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
	_, cmdline := o.kernelCmdline()
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
