package stageopt

// QemuImg checks its options when the manifest is decoded.
var _ validator = (*QemuImg)(nil)

// QemuImg converts a raw disk file to qcow2 or to a fixed-size VHD (qemu's
// "vpc" format) with qemu-img. A VHD's virtual size is the raw size rounded
// up to 1 MiB, as Azure requires, and its footer's time stamp and UUID
// (which qemu-img fills from the clock and at random) are set from
// SOURCE_DATE_EPOCH and UUID, so the file is the same on every build.
type QemuImg struct {
	Conversion
	// Format is "qcow2" or "vpc".
	Format string `json:"format"`
	// Compress compresses qcow2 clusters (zlib); much slower.
	Compress bool `json:"compress,omitempty"`
	// UUID is the VHD footer's UUID; required for vpc, unused otherwise.
	UUID string `json:"uuid,omitempty"`
}

func init() { register[QemuImg]("qemu-img") }

// Validate checks the options.
func (o *QemuImg) Validate() error {
	if err := o.Conversion.validate(); err != nil {
		return err
	}
	switch o.Format {
	case "qcow2":
		if o.UUID != "" {
			return optErr("uuid", "is only for format vpc")
		}
	case "vpc":
		if o.Compress {
			return optErr("compress", "is only for format qcow2")
		}
		return checkUUID("uuid", o.UUID)
	default:
		return optErr("format", "must be qcow2 or vpc, got %q", o.Format)
	}
	return nil
}
