package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrChecksum is wrapped by errors about an artifact whose bytes do not
// have its recorded sha256.
var ErrChecksum = errors.New("artifact checksum mismatch")

// Verifier passes an artifact's bytes through and checks them against the
// recorded sha256 when they have been read from the first byte to the last
// in order: the read that would hand out the last bytes returns an
// ErrChecksum error instead when they differ, so a reader never gets a
// whole but wrong artifact. Reads after a Seek elsewhere (range requests)
// are passed through unchecked.
type Verifier struct {
	r      io.Reader
	size   int64
	want   string
	h      hash.Hash
	hashed int64
	pos    int64
}

// NewVerifier returns a Verifier of r, an artifact of size bytes whose
// sha256 (hex) is want; an empty want checks nothing.
func NewVerifier(r io.Reader, size int64, want string) *Verifier {
	return &Verifier{r: r, size: size, want: want, h: sha256.New()}
}

// Read implements io.Reader.
func (v *Verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if v.want != "" && v.pos == v.hashed {
		v.h.Write(p[:n])
		v.hashed += int64(n)
		if v.hashed == v.size {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
				return 0, fmt.Errorf("%w: the bytes have sha256 %s, recorded %s", ErrChecksum, got, v.want)
			}
		}
	}
	v.pos += int64(n)
	return n, err
}

// Seek implements io.Seeker when the underlying reader does.
func (v *Verifier) Seek(offset int64, whence int) (int64, error) {
	s, ok := v.r.(io.Seeker)
	if !ok {
		return 0, errors.New("artifacts: seek: not seekable")
	}
	pos, err := s.Seek(offset, whence)
	if err == nil {
		v.pos = pos
	}
	return pos, err
}
