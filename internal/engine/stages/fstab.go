package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("fstab", func(o *stageopt.Fstab) Stage { return (*Fstab)(o) })
}

// Fstab is the fstab stage; its options are stageopt.Fstab.
type Fstab stageopt.Fstab

// Run writes etc/fstab (mode 0644, mtime SOURCE_DATE_EPOCH).
func (o *Fstab) Run(ctx context.Context, env *Env) error {
	if env.Tree == "" {
		return errors.New("fstab: must run in a tree pipeline (env.Tree is empty)")
	}
	var b strings.Builder
	for _, e := range o.Entries {
		spec := "UUID=" + e.UUID
		if e.Label != "" {
			spec = "LABEL=" + e.Label
		}
		opts := e.Options
		if opts == "" {
			opts = "defaults"
		}
		fmt.Fprintf(&b, "%s %s %s %s %d %d\n", spec, e.Path, e.VFSType, opts, e.Freq, e.PassNo)
	}
	dir := filepath.Join(env.Tree, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	// Keep /etc's times: writing a file in it must not stamp it with now.
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	defer os.Chtimes(dir, time.Time{}, dirInfo.ModTime())
	tmp := filepath.Join(dir, ".fstab.kib-tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	t := time.Unix(env.SourceDateEpoch, 0)
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fstab: %w", err)
	}
	if err := os.Chtimes(tmp, t, t); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fstab: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "fstab")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fstab: %w", err)
	}
	logger(env).Info("fstab: written", "entries", len(o.Entries))
	return nil
}
