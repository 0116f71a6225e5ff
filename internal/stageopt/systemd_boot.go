package stageopt

import "regexp"

// SystemdBoot checks its options when the manifest is decoded.
var _ validator = (*SystemdBoot)(nil)

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

func init() { register[SystemdBoot]("systemd-boot") }

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
