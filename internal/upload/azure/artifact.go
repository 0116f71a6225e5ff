package azure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/kib-project/kib/internal/upload"
)

// vhdFixed is the disk type of a fixed VHD in its footer.
const vhdFixed = 2

// checkArtifact refuses what Azure cannot import: another image type than
// vhd, or a file that is not a fixed VHD whose size is a whole number of
// MiB plus the 512-byte footer.
func checkArtifact(a upload.Artifact) error {
	if a.ImageType != "vhd" {
		return fmt.Errorf("azure: image type %q cannot be uploaded to azure: it takes a fixed VHD (image type vhd)", a.ImageType)
	}
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("azure: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("azure: %w", err)
	}
	size := fi.Size()
	if size < PageSize || size%PageSize != 0 {
		return fmt.Errorf("azure: %s is %d bytes: a fixed VHD is a multiple of 512 bytes (page blob alignment)", a.Path, size)
	}
	var footer [PageSize]byte
	if _, err := f.ReadAt(footer[:], size-PageSize); err != nil && err != io.EOF {
		return fmt.Errorf("azure: reading the VHD footer of %s: %w", a.Path, err)
	}
	if !bytes.Equal(footer[:8], []byte("conectix")) {
		return fmt.Errorf("azure: %s is not a VHD: no \"conectix\" footer in its last 512 bytes", a.Path)
	}
	if t := binary.BigEndian.Uint32(footer[60:64]); t != vhdFixed {
		return fmt.Errorf("azure: %s is a VHD of disk type %d; Azure takes only fixed VHDs (type 2)", a.Path, t)
	}
	if virt := int64(binary.BigEndian.Uint64(footer[48:56])); virt%(1<<20) != 0 || virt != size-PageSize {
		return fmt.Errorf("azure: %s: virtual size %d must be a whole number of MiB and the file's size less the footer (%d)", a.Path, virt, size-PageSize)
	}
	return nil
}
