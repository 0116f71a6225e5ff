package stages

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// grub is the GRUB configuration of a stage, with what the GRUB stages do
// with it.
type grub stageopt.GrubConfig

// paths returns the kernel and initrd, with Debian's defaults.
func (c *grub) paths() (kernel, initrd string) {
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
func (c *grub) check(env *Env) error {
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
func (c *grub) kernelCmdline() (uuid, cmdline string) {
	uuid = strings.ToLower(c.RootUUID)
	return uuid, strings.TrimSpace("root=UUID=" + uuid + " " + c.KernelOptions)
}

// config returns the embedded GRUB configuration.
func (c *grub) config() string {
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
func (c *grub) mkimage(ctx context.Context, env *Env, format, out string, extraModules ...string) error {
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
