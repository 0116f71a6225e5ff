package stageopt

import (
	"errors"
	"fmt"
	"strings"
)

// Tar archives an input tree into a reproducible tar, optionally compressed:
// entries sorted by name, numeric owners, times clamped to SOURCE_DATE_EPOCH,
// extended attributes kept, no atime/ctime.
type Tar struct {
	// Source is the tree pipeline to archive.
	Source   string `json:"source"`
	Filename string `json:"filename"`
	// Compression is "xz" or "none".
	Compression string `json:"compression"`
	// Level is the xz preset (0-9).
	Level int `json:"level,omitempty"`
	// Exclude lists tar --exclude patterns, anchored at the tree root
	// ("./dev/*").
	Exclude []string `json:"exclude,omitempty"`
}

func init() { register[Tar]("tar") }

// Validate checks the options.
func (t *Tar) Validate() error {
	var errs []error
	if t.Source == "" {
		errs = append(errs, errors.New("source: required"))
	}
	if t.Filename == "" || strings.ContainsAny(t.Filename, "/\x00") {
		errs = append(errs, fmt.Errorf("filename: %q must be a plain file name", t.Filename))
	}
	switch t.Compression {
	case "xz":
		if t.Level < 0 || t.Level > 9 {
			errs = append(errs, fmt.Errorf("level: %d must be 0..9", t.Level))
		}
	case "none":
	default:
		errs = append(errs, fmt.Errorf("compression: %q is not one of xz, none", t.Compression))
	}
	return errors.Join(errs...)
}

// InputNames returns the tree the stage archives.
func (t *Tar) InputNames() []string { return []string{t.Source} }
