package stageopt

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

func init() { register[GrubEFI]("grub-efi") }

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
