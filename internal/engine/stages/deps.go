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

// Tools lists the host tools the stage runs.
func (o *QemuImg) Tools() []string { return []string{"qemu-img"} }

// Tools lists the host tools the stage runs.
func (o *XZ) Tools() []string { return []string{"xz"} }

// Tools lists the host tools the stage runs.
func (o *GCETar) Tools() []string { return []string{"tar"} }

// Conversion is the input and output of a stage that turns one file into
// another (qemu-img, xz, gce-tar).
type Conversion struct {
	// Input names the pipeline holding InputFilename; empty means this
	// pipeline's output directory.
	Input         string `json:"input,omitempty"`
	InputFilename string `json:"input_filename"`
	// Filename is the file to write in the output directory.
	Filename string `json:"filename"`
}

func (c *Conversion) validate() error {
	if err := checkPipelineName("input", c.Input, false); err != nil {
		return err
	}
	if err := checkFilename("input_filename", c.InputFilename); err != nil {
		return err
	}
	if err := checkFilename("filename", c.Filename); err != nil {
		return err
	}
	if c.Input == "" && c.InputFilename == c.Filename {
		return optErr("filename", "must differ from input_filename when both are in this pipeline")
	}
	return nil
}

// inputPath returns the input file's path, which must be a regular file.
func (c *Conversion) inputPath(env *Env) (string, error) {
	return inputFile(env, c.Input, c.InputFilename)
}

// InputNames returns the pipeline holding the input file, if not this one.
func (c *Conversion) InputNames() []string { return optional(c.Input) }
