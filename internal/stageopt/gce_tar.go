package stageopt

// GCETar checks its options when the manifest is decoded.
var _ validator = (*GCETar)(nil)

// GCETar packs a raw disk as Google Compute Engine wants it: a gzipped tar
// holding one file, disk.raw, in GNU tar's oldgnu format with sparse
// entries. Holes are found by reading the data (--hole-detection=raw), not
// from the file system, and the entry's time, owner and mode are fixed, so
// the archive is the same on every build. GNU tar stores a file as sparse
// only when it uses fewer blocks than its size, which disk images made by
// kib's stages always do (they are never written with zeros). The gzip
// stream is compressed on every core in blocks of 1 MiB; its bytes do not
// depend on the number of cores.
type GCETar struct {
	Conversion
	// Level is the gzip level, 1 to 9; 0 means 6.
	Level int `json:"level,omitempty"`
}

func init() { register[GCETar]("gce-tar") }

// Validate checks the options.
func (o *GCETar) Validate() error {
	if err := o.Conversion.validate(); err != nil {
		return err
	}
	if o.Level < 0 || o.Level > 9 {
		return optErr("level", "must be 1 to 9 (0 for the default 6), got %d", o.Level)
	}
	return nil
}
