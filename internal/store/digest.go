package store

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
)

// digestsRecord is the record in which an object keeps the sha256 of its
// files, so that an export does not read gigabytes again to hash them.
const digestsRecord = "digests"

// Digest is the sha256 of one file of an object, with the size and
// modification time the file had when it was hashed: a file that no longer
// has both is hashed again.
type Digest struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime_ns"`
}

// NewDigest is the Digest of a file with the given sha256 and stat.
func NewDigest(sha256 string, fi fs.FileInfo) Digest {
	return Digest{SHA256: sha256, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
}

// Matches reports whether d was taken of a file that still has fi's size
// and modification time.
func (d Digest) Matches(fi fs.FileInfo) bool {
	return d.SHA256 != "" && d.Size == fi.Size() && d.MTime == fi.ModTime().UnixNano()
}

// Digests returns the digests the object in dir keeps, by file name; none
// when it keeps none or the record cannot be read.
func Digests(dir string) map[string]Digest {
	data, err := ReadRecord(dir, digestsRecord)
	if err != nil {
		return nil
	}
	var m map[string]Digest
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

// AddDigests adds ds to the digests the object in dir keeps (an object being
// built or a complete one).
func AddDigests(dir string, ds map[string]Digest) error {
	m := Digests(dir)
	if m == nil {
		m = map[string]Digest{}
	}
	for name, d := range ds {
		if name == "" || filepath.Base(name) != name {
			return fmt.Errorf("store: digest of %q: a file name without directories", name)
		}
		m[name] = d
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return WriteRecord(dir, digestsRecord, data)
}
