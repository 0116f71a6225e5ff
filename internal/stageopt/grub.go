package stageopt

import "regexp"

// GrubConfig is what the GRUB stages embed in their image: find the root file
// system by UUID, load its kernel and initrd, boot. It is embedded as
// grub-mkimage's early configuration (-c), with every module it needs built
// into the image, so nothing is read from a GRUB directory at boot and the
// image is the same on every build (grub-mkstandalone is not: its memdisk
// tar records the current time).
type GrubConfig struct {
	// Source names the tree pipeline of the root file system; Kernel and
	// Initrd must exist in it.
	Source string `json:"source"`
	// RootUUID is the root file system's UUID.
	RootUUID string `json:"root_uuid"`
	// Kernel and Initrd are paths in the root file system; they default to
	// Debian's /vmlinuz and /initrd.img links, which kernel upgrades keep
	// current.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// KernelOptions follow "root=UUID=<root_uuid>" on the kernel command
	// line, e.g. "ro console=tty0 console=ttyS0,115200".
	KernelOptions string `json:"kernel_options,omitempty"`
}

var (
	grubPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._+-]+)+$`)
	grubOptsRE = regexp.MustCompile(`^[A-Za-z0-9 ._,:=/+@-]*$`)
)

func (c *GrubConfig) validate() error {
	if err := checkPipelineName("source", c.Source, true); err != nil {
		return err
	}
	if err := checkUUID("root_uuid", c.RootUUID); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"kernel", c.Kernel}, {"initrd", c.Initrd}} {
		if f.v != "" && !grubPathRE.MatchString(f.v) {
			return optErr(f.name, "must be an absolute path of [A-Za-z0-9._+-] components, got %q", f.v)
		}
	}
	if !grubOptsRE.MatchString(c.KernelOptions) {
		return optErr("kernel_options", "may hold only [A-Za-z0-9 ._,:=/+@-], got %q", c.KernelOptions)
	}
	return nil
}
