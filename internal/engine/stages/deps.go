package stages

import "github.com/kib-project/kib/internal/stageopt"

// The pipelines each stage reads (InputReader) and the host tools it runs
// (ToolUser), so the engine builds inputs first and checks tools up front.

// Tools lists the host tools the stage runs.
func (o *Ext4) Tools() []string { return []string{"mkfs.ext4", "debugfs", "dumpe2fs"} }

// Tools lists the host tools the stage runs.
func (o *GPT) Tools() []string { return []string{"sfdisk"} }

// Tools lists the host tools the stage runs.
func (o *ESP) Tools() []string { return []string{"mkfs.vfat", "mmd", "mcopy", "mdir"} }

// Tools lists the host tools the stage runs.
func (o *GrubEFI) Tools() []string { return []string{"grub-mkimage", "mmd", "mcopy", "mdir"} }

// Tools lists the host tools the stage runs.
func (o *GrubBIOS) Tools() []string { return []string{"grub-mkimage"} }

// Tools lists the host tools the stage runs.
func (o *SystemdBoot) Tools() []string { return []string{"mmd", "mcopy", "mdir"} }

// Tools lists the host tools the stage runs.
func (o *QemuImg) Tools() []string {
	if o.Format == "vpc" {
		return nil // kib writes fixed VHDs itself
	}
	return []string{"qemu-img"}
}

// Tools lists the host tools the stage runs.
func (o *XZ) Tools() []string { return []string{"xz"} }

// Tools lists the host tools the stage runs.
func (o *GCETar) Tools() []string { return []string{"tar"} }

// The options say which pipelines a stage reads; a stage type defined over
// its options type does not inherit their methods, so it asks them.

// InputNames returns the tree the stage copies into the file system.
func (o *Ext4) InputNames() []string { return (*stageopt.Ext4)(o).InputNames() }

// InputNames returns the tree holding the kernel.
func (o *GrubEFI) InputNames() []string { return (*stageopt.GrubEFI)(o).InputNames() }

// InputNames returns the tree holding the kernel.
func (o *GrubBIOS) InputNames() []string { return (*stageopt.GrubBIOS)(o).InputNames() }

// InputNames returns the tree holding the kernel.
func (o *SystemdBoot) InputNames() []string { return (*stageopt.SystemdBoot)(o).InputNames() }

// InputNames returns the tree the stage archives.
func (t *Tar) InputNames() []string { return (*stageopt.Tar)(t).InputNames() }

// InputNames returns the tree the stage packs.
func (o *OCIArchive) InputNames() []string { return (*stageopt.OCIArchive)(o).InputNames() }

// QemuImg, XZ and GCETar embed stageopt.Conversion, whose InputNames they
// keep.
