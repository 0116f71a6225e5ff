package stages

// The pipelines each stage reads (InputReader) and the host tools it runs
// (ToolUser), so the engine builds inputs first and checks tools up front.

func optional(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}

// InputNames returns the tree the stage copies into the file system.
func (o *Ext4) InputNames() []string { return []string{o.Source} }

// Tools lists the host tools the stage runs.
func (o *Ext4) Tools() []string { return []string{"mkfs.ext4", "debugfs", "dumpe2fs"} }

// Tools lists the host tools the stage runs.
func (o *GPT) Tools() []string { return []string{"sfdisk"} }

// Tools lists the host tools the stage runs.
func (o *ESP) Tools() []string { return []string{"mkfs.vfat", "mmd", "mcopy", "mdir"} }

// InputNames returns the tree holding the kernel.
func (o *GrubEFI) InputNames() []string { return []string{o.Source} }

// Tools lists the host tools the stage runs.
func (o *GrubEFI) Tools() []string { return []string{"grub-mkimage", "mmd", "mcopy", "mdir"} }

// InputNames returns the tree holding the kernel.
func (o *GrubBIOS) InputNames() []string { return []string{o.Source} }

// Tools lists the host tools the stage runs.
func (o *GrubBIOS) Tools() []string { return []string{"grub-mkimage"} }

// InputNames returns the tree holding the kernel.
func (o *SystemdBoot) InputNames() []string { return []string{o.Source} }

// Tools lists the host tools the stage runs.
func (o *SystemdBoot) Tools() []string { return []string{"mmd", "mcopy", "mdir"} }

// InputNames returns the pipeline holding the input file, if not this one.
func (o *QemuImg) InputNames() []string { return optional(o.Input) }

// Tools lists the host tools the stage runs.
func (o *QemuImg) Tools() []string { return []string{"qemu-img"} }

// InputNames returns the pipeline holding the input file, if not this one.
func (o *XZ) InputNames() []string { return optional(o.Input) }

// Tools lists the host tools the stage runs.
func (o *XZ) Tools() []string { return []string{"xz"} }

// InputNames returns the pipeline holding the input file, if not this one.
func (o *GCETar) InputNames() []string { return optional(o.Input) }

// Tools lists the host tools the stage runs.
func (o *GCETar) Tools() []string { return []string{"tar"} }
