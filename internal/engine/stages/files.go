package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kib-project/kib/internal/stageopt"
)

// Files is the files stage; its options are stageopt.Files.
type Files stageopt.Files

func init() {
	register("files", func(o *stageopt.Files) Stage { return (*Files)(o) })
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
