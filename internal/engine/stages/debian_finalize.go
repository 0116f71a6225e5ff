package stages

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/stageopt"
)

// DebianFinalize is the debian-finalize stage; its options are stageopt.DebianFinalize.
type DebianFinalize stageopt.DebianFinalize

func init() {
	register("debian-finalize", func(o *stageopt.DebianFinalize) Stage { return (*DebianFinalize)(o) })
}

// Run rewrites the apt sources and removes host- and build-specific files.
func (d *DebianFinalize) Run(_ context.Context, env *Env) error {
	src := strings.Join(d.Sources, "\n")
	if src != "" {
		src += "\n"
	}
	if err := writeTreeFile(env.Tree, "/etc/apt/sources.list", []byte(src), 0o644); err != nil {
		return err
	}
	if d.KernelCmdline != "" {
		if err := writeTreeFile(env.Tree, "/etc/kernel/cmdline", []byte(d.KernelCmdline+"\n"), 0o644); err != nil {
			return err
		}
	}
	for _, p := range []string{"etc/resolv.conf", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"} {
		if err := os.Remove(filepath.Join(env.Tree, p)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	for _, glob := range []string{"var/lib/apt/lists/*_*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/*-"} {
		matches, _ := filepath.Glob(filepath.Join(env.Tree, glob))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}
