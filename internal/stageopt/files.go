package stageopt

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// Files writes files into the image.
type Files struct {
	Files []FileSpec `json:"files"`
}

func init() { register[Files]("files") }

// FileSpec is one file: its path in the image, content, mode and owner.
type FileSpec struct {
	Path  string `json:"path"`
	Data  string `json:"data"`
	Mode  string `json:"mode"`
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Validate checks the options.
func (f *Files) Validate() error {
	var errs []error
	for i, fs := range f.Files {
		if !filepath.IsAbs(fs.Path) || filepath.Clean(fs.Path) != fs.Path || fs.Path == "/" {
			errs = append(errs, fmt.Errorf("files[%d].path: %q must be an absolute, clean path below /", i, fs.Path))
		}
		if m, err := strconv.ParseUint(fs.Mode, 8, 32); err != nil || m > 0o7777 {
			errs = append(errs, fmt.Errorf("files[%d].mode: %q must be an octal mode such as 0644", i, fs.Mode))
		}
	}
	return errors.Join(errs...)
}
