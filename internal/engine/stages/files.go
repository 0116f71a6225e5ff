package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Files writes files into the image.
type Files struct {
	Files []FileSpec `json:"files"`
}

// FileSpec is one file: its path in the image, content, mode and owner.
type FileSpec struct {
	Path  string `json:"path"`
	Data  string `json:"data"`
	Mode  string `json:"mode"`
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

func init() { register[Files]("files") }

// Validate checks the options.
func (f *Files) Validate() error {
	var errs []error
	for i, fs := range f.Files {
		if _, err := imagePath("/", fs.Path); err != nil || fs.Path == "/" {
			errs = append(errs, fmt.Errorf("files[%d].path: %q must be an absolute, clean path below /", i, fs.Path))
		}
		if m, err := strconv.ParseUint(fs.Mode, 8, 32); err != nil || m > 0o7777 {
			errs = append(errs, fmt.Errorf("files[%d].mode: %q must be an octal mode such as 0644", i, fs.Mode))
		}
	}
	return errors.Join(errs...)
}

// Run writes the files, creating parent directories, and sets their owners.
func (f *Files) Run(_ context.Context, env *Env) error {
	for i, fs := range f.Files {
		m, _ := strconv.ParseUint(fs.Mode, 8, 32)
		if err := writeTreeFile(env.Tree, fs.Path, []byte(fs.Data), os.FileMode(m)); err != nil {
			return fmt.Errorf("files[%d] %s: %w", i, fs.Path, err)
		}
		uid, gid := 0, 0
		if fs.User != "" {
			// Like chown USER: the group stays root unless given.
			u, _, _, err := lookupID(env.Tree, "passwd", fs.User)
			if err != nil {
				return fmt.Errorf("files[%d].user: %w", i, err)
			}
			uid = u
		}
		if fs.Group != "" {
			g, _, _, err := lookupID(env.Tree, "group", fs.Group)
			if err != nil {
				return fmt.Errorf("files[%d].group: %w", i, err)
			}
			gid = g
		}
		if err := os.Lchown(filepath.Join(env.Tree, fs.Path), uid, gid); err != nil {
			return fmt.Errorf("files[%d] %s: %w", i, fs.Path, err)
		}
	}
	return nil
}
