package stageopt

import (
	"fmt"
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
