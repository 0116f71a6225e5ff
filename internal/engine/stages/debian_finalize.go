package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DebianFinalize makes the tree independent of the build host: apt sources
// pointing at the real mirrors, no host resolv.conf, no build-time caches.
type DebianFinalize struct {
	// Sources are the apt source lines the image keeps.
	Sources []string `json:"sources"`
	// KernelCmdline, if set, is written to /etc/kernel/cmdline.
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
}

func init() { register[DebianFinalize]("debian-finalize") }

// Validate checks the options.
func (d *DebianFinalize) Validate() error {
	for i, s := range d.Sources {
		if !strings.HasPrefix(s, "deb ") || strings.Contains(s, "\n") {
			return fmt.Errorf("sources[%d]: %q is not a one-line 'deb ...' entry", i, s)
		}
	}
	if strings.ContainsAny(d.KernelCmdline, "\n\x00") {
		return fmt.Errorf("kernel_cmdline: must be one line")
	}
	return nil
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
