package stageopt

// XZ checks its options when the manifest is decoded.
var _ validator = (*XZ)(nil)

// XZ compresses a file with xz. It always uses xz's multi-threaded mode with
// a fixed block size (--threads=+N --block-size=B), whose output does not
// depend on the number of threads, so builds on machines with different core
// counts give the same file.
type XZ struct {
	Conversion
	// Level is the preset, 1 to 9; 0 means 6 (xz's default).
	Level int `json:"level,omitempty"`
	// BlockSize is the size of independently compressed blocks in bytes; 0
	// means 24 MiB (xz's default for level 6).
	BlockSize uint64 `json:"block_size,omitempty"`
}

func init() { register[XZ]("xz") }

// Validate checks the options.
func (o *XZ) Validate() error {
	if err := o.Conversion.validate(); err != nil {
		return err
	}
	if o.Level < 0 || o.Level > 9 {
		return optErr("level", "must be 1 to 9 (0 for the default 6), got %d", o.Level)
	}
	if o.BlockSize != 0 && o.BlockSize < 4096 {
		return optErr("block_size", "must be at least 4096 bytes (0 for the default), got %d", o.BlockSize)
	}
	return nil
}
