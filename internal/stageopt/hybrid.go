package stageopt

import "fmt"

// StageSpec is a stage type name with its options, as a manifest holds them.
// Options is a pointer to the type's options struct (*GPT for "gpt").
type StageSpec struct {
	Type    string
	Options any
}

// HybridDisk is the standard layout of kib's x86_64 disk images, bootable
// with BIOS and with UEFI: a 1 MiB BIOS boot partition holding GRUB's
// core.img, an ESP holding GRUB's EFI image, and an ext4 root file system
// filling the rest. Every GUID, UUID and volume ID is derived from Seed.
// Plan gives the disk pipeline's stages and Fstab the tree stage that must
// run in the root tree's pipeline.
type HybridDisk struct {
	// Filename is the raw disk file, e.g. "disk.raw".
	Filename string
	// Size is the disk size in bytes, a multiple of 1 MiB.
	Size uint64
	// ESPSize is the ESP's size in bytes; 0 means 256 MiB.
	ESPSize uint64
	// Seed drives every identifier.
	Seed int64
	// Source names the root tree pipeline.
	Source string
	// KernelOptions follow root=UUID=… on the kernel command line.
	KernelOptions string
}

// RootUUID is the root file system's UUID.
func (h HybridDisk) RootUUID() string { return UUIDFromSeed(h.Seed, "fs-root") }

// ESPVolumeID is the ESP's FAT volume ID (8 hex digits).
func (h HybridDisk) ESPVolumeID() string { return VolumeIDFromSeed(h.Seed, "fs-esp") }

// Layout returns the BIOS boot, ESP and root partitions' byte ranges.
func (h HybridDisk) Layout() ([]Extent, error) {
	esp := h.ESPSize
	if esp == 0 {
		esp = 256 * MiB
	}
	return LayoutPartitions(h.Size, []uint64{MiB, esp, 0})
}

// Fstab returns the fstab stage for the root tree: / and /boot/efi.
func (h HybridDisk) Fstab() *Fstab {
	v := h.ESPVolumeID()
	return &Fstab{Entries: []FstabEntry{
		{UUID: h.RootUUID(), Path: "/", VFSType: "ext4", Options: "errors=remount-ro", PassNo: 1},
		{UUID: v[:4] + "-" + v[4:], Path: "/boot/efi", VFSType: "vfat", Options: "umask=0077,nofail", PassNo: 2},
	}}
}

// Plan returns the stages that assemble the raw disk, in order: gpt, esp,
// ext4, grub-efi, grub-bios. Each is validated.
func (h HybridDisk) Plan() ([]StageSpec, error) {
	ext, err := h.Layout()
	if err != nil {
		return nil, err
	}
	bios, esp, root := ext[0], ext[1], ext[2]
	grub := GrubConfig{Source: h.Source, RootUUID: h.RootUUID(), KernelOptions: h.KernelOptions}
	specs := []StageSpec{
		{"gpt", &GPT{Filename: h.Filename, Size: h.Size, UUID: UUIDFromSeed(h.Seed, "disk"), Partitions: []GPTPartition{
			{Start: bios.Start, Size: bios.Size, Type: GPTTypeBIOSBoot, UUID: UUIDFromSeed(h.Seed, "partition-bios"), Name: "bios"},
			{Start: esp.Start, Size: esp.Size, Type: GPTTypeESP, UUID: UUIDFromSeed(h.Seed, "partition-esp"), Name: "esp"},
			{Start: root.Start, Size: root.Size, Type: GPTTypeRootX86_64, UUID: UUIDFromSeed(h.Seed, "partition-root"), Name: "root"},
		}}},
		{"esp", &ESP{Filename: h.Filename, Offset: esp.Start, Size: esp.Size, VolumeID: h.ESPVolumeID(), Label: "ESP",
			Directories: []string{"/EFI", "/EFI/BOOT"}}},
		{"ext4", &Ext4{Filename: h.Filename, Source: h.Source, Offset: root.Start, Size: root.Size,
			UUID: h.RootUUID(), HashSeed: UUIDFromSeed(h.Seed, "fs-root-hash-seed"), Label: "root"}},
		{"grub-efi", &GrubEFI{Filename: h.Filename, ESPOffset: esp.Start, GrubConfig: grub}},
		{"grub-bios", &GrubBIOS{Filename: h.Filename, Offset: bios.Start, Size: bios.Size, GrubConfig: grub}},
	}
	for _, s := range specs {
		if v, ok := s.Options.(validator); ok {
			if err := v.Validate(); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Type, err)
			}
		}
	}
	return specs, nil
}
