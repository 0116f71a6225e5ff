package stageopt

import (
	"errors"
	"fmt"
	"strings"
)

// Mmdebstrap installs pinned packages into the tree with mmdebstrap, from a
// local repository made of exactly the pinned .debs. Nothing is downloaded.
type Mmdebstrap struct {
	// Suite is the suite name written into the local repository's Release
	// file (mmdebstrap selects essential packages by it).
	Suite string `json:"suite"`
	// Packages are the names of the packages to install: all of them, as
	// with mmdebstrap's custom variant.
	Packages []string `json:"packages"`
	// Debs are the sha256 digests of the .debs the local repository holds.
	Debs []string `json:"debs"`
}

func init() { register[Mmdebstrap]("mmdebstrap") }

// Validate checks the options.
func (m *Mmdebstrap) Validate() error {
	var errs []error
	if m.Suite == "" || strings.ContainsAny(m.Suite, " /\n") {
		errs = append(errs, fmt.Errorf("suite: %q must be a suite name", m.Suite))
	}
	if len(m.Packages) == 0 {
		errs = append(errs, errors.New("packages: at least one required"))
	}
	for i, p := range m.Packages {
		if p == "" || strings.ContainsAny(p, " ,\n") {
			errs = append(errs, fmt.Errorf("packages[%d]: %q is not a package name", i, p))
		}
	}
	if len(m.Debs) == 0 {
		errs = append(errs, errors.New("debs: at least one required"))
	}
	for i, d := range m.Debs {
		if !isSHA256(d) {
			errs = append(errs, fmt.Errorf("debs[%d]: %q is not a sha256 hex digest", i, d))
		}
	}
	return errors.Join(errs...)
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
