package stageopt

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// DebsUnpack unpacks pinned .debs into the tree with kib's own code (ar and
// tar readers, xz, zstd and gzip): no dpkg, apt or mmdebstrap on the host.
// It runs no maintainer scripts, so the tree is a tool box (the build root
// the other pipelines' tools run in), not a system to boot.
type DebsUnpack struct {
	// Debs are the sha256 digests of the .debs, unpacked in this order.
	Debs []string `json:"debs"`
	// Alternatives are the links update-alternatives would make, as
	// "link=target" (/usr/bin/awk=/usr/bin/mawk).
	Alternatives []string `json:"alternatives,omitempty"`
}

func init() { register[DebsUnpack]("debs-unpack") }

var _ validator = (*DebsUnpack)(nil)

// Validate checks the options.
func (o *DebsUnpack) Validate() error {
	var errs []error
	if len(o.Debs) == 0 {
		errs = append(errs, errors.New("debs: at least one required"))
	}
	for i, d := range o.Debs {
		if !isSHA256(d) {
			errs = append(errs, fmt.Errorf("debs[%d]: %q is not a sha256 hex digest", i, d))
		}
	}
	for i, a := range o.Alternatives {
		l, t, ok := strings.Cut(a, "=")
		if !ok || !path.IsAbs(l) || !path.IsAbs(t) || path.Clean(l) != l || path.Clean(t) != t || l == "/" {
			errs = append(errs, fmt.Errorf("alternatives[%d]: %q must be /link=/target, both clean absolute paths", i, a))
		}
	}
	return errors.Join(errs...)
}
