package stageopt

// GrubBIOS checks its options when the manifest is decoded.
var _ validator = (*GrubBIOS)(nil)

// GrubBIOS installs GRUB for BIOS boot without grub-install and without a
// loop device: it builds core.img (grub-mkimage -O i386-pc, with biosdisk,
// GPT, ext2 and the embedded configuration), writes it into the BIOS boot
// partition, points its diskboot blocklist at the following sectors, and
// writes boot.img's code into the protective MBR (keeping the partition
// table), pointing it at core.img. This is what grub-bios-setup does for an
// embedded core.img.
type GrubBIOS struct {
	// Filename is the disk file in the output directory (made by gpt).
	Filename string `json:"filename"`
	// Offset and Size are the BIOS boot partition's byte range.
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	GrubConfig
}

func init() { register[GrubBIOS]("grub-bios") }

// Validate checks the options.
func (o *GrubBIOS) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if err := checkExtent("", o.Offset, o.Size, SectorSize); err != nil {
		return err
	}
	return o.GrubConfig.validate()
}
