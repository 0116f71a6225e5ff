package stageopt

// The pipelines each stage reads (InputReader), which must come before it.

func optional(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}

// InputNames returns the tree the stage copies into the file system.
func (o *Ext4) InputNames() []string { return []string{o.Source} }

// InputNames returns the tree holding the kernel.
func (o *GrubEFI) InputNames() []string { return []string{o.Source} }

// InputNames returns the tree holding the kernel.
func (o *GrubBIOS) InputNames() []string { return []string{o.Source} }

// InputNames returns the tree holding the kernel.
func (o *SystemdBoot) InputNames() []string { return []string{o.Source} }

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

// InputNames returns the pipeline holding the input file, if not this one.
func (c *Conversion) InputNames() []string { return optional(c.Input) }
