package stages

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

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

func (c *GrubConfig) paths() (kernel, initrd string) {
	kernel, initrd = c.Kernel, c.Initrd
	if kernel == "" {
		kernel = "/vmlinuz"
	}
	if initrd == "" {
		initrd = "/initrd.img"
	}
	return kernel, initrd
}

// check makes sure the kernel and initrd exist in the source tree.
func (c *GrubConfig) check(env *Env) error {
	root, err := env.Input(c.Source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	kernel, initrd := c.paths()
	for _, p := range []string{kernel, initrd} {
		hp, err := treePath(root, p)
		if err != nil {
			return fmt.Errorf("%s in tree %s: %w", p, c.Source, err)
		}
		fi, err := os.Stat(hp)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s in tree %s is not a regular file", p, c.Source)
		}
	}
	return nil
}

// kernelCmdline returns the root's UUID and the kernel command line.
func (c *GrubConfig) kernelCmdline() (uuid, cmdline string) {
	uuid = strings.ToLower(c.RootUUID)
	return uuid, strings.TrimSpace("root=UUID=" + uuid + " " + c.KernelOptions)
}

// config returns the embedded GRUB configuration.
func (c *GrubConfig) config() string {
	kernel, initrd := c.paths()
	_, cmdline := c.kernelCmdline()
	return strings.Join([]string{
		"serial --unit=0 --speed=115200",
		"terminal_input serial console",
		"terminal_output serial console",
		"search --no-floppy --fs-uuid --set=root " + strings.ToLower(c.RootUUID),
		"linux " + kernel + " " + cmdline,
		"initrd " + initrd,
		"boot",
		"",
	}, "\n")
}

// grubModules are built into every GRUB image; platform modules are added.
var grubModules = []string{"part_gpt", "ext2", "search", "search_fs_uuid", "linux", "boot", "serial", "terminal"}

// mkimage builds a GRUB image for format (x86_64-efi, i386-pc) into the
// scratch file out.
func (c *GrubConfig) mkimage(ctx context.Context, env *Env, format, out string, extraModules ...string) error {
	cfg, err := writeScratch(env, "grub-"+format+".cfg", []byte(c.config()))
	if err != nil {
		return err
	}
	args := []string{"-O", format, "-o", out, "-p", "/boot/grub", "-c", cfg}
	args = append(args, extraModules...)
	args = append(args, grubModules...)
	if _, err := run(ctx, env, hostcmd.Cmd{Path: "grub-mkimage", Args: args}); err != nil {
		return err
	}
	return nil
}
