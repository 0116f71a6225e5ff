// Package hostcmd runs the host tools kib drives (mmdebstrap, apt-get, mkfs,
// qemu-img, ...) so that cancellation stops the whole process tree and a
// missing tool is reported with the Debian package that provides it.
package hostcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// packages maps a host tool to the Debian package that ships it.
var packages = map[string]string{
	"apt-get":            "apt",
	"apt-ftparchive":     "apt-utils",
	"dpkg-deb":           "dpkg",
	"mmdebstrap":         "mmdebstrap",
	"unshare":            "util-linux",
	"tar":                "tar",
	"xz":                 "xz-utils",
	"zstd":               "zstd",
	"gzip":               "gzip",
	"sfdisk":             "fdisk",
	"mkfs.ext4":          "e2fsprogs",
	"debugfs":            "e2fsprogs",
	"dumpe2fs":           "e2fsprogs",
	"e2fsck":             "e2fsprogs",
	"mkfs.vfat":          "dosfstools",
	"mmd":                "mtools",
	"mcopy":              "mtools",
	"grub-mkstandalone":  "grub2-common",
	"grub-mkimage":       "grub-common",
	"mdir":               "mtools",
	"qemu-img":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"systemctl":          "systemd",
	"useradd":            "passwd",
	"chroot":             "coreutils",
}

// Package returns the Debian package that provides tool, or "" if unknown.
func Package(tool string) string { return packages[tool] }

// MissingToolError reports a host tool that is not installed.
type MissingToolError struct {
	Tool    string
	Package string
}

func (e *MissingToolError) Error() string {
	if e.Package == "" {
		return fmt.Sprintf("host tool %q not found in PATH", e.Tool)
	}
	return fmt.Sprintf("host tool %q not found in PATH: install the Debian package %q (apt-get install %s)", e.Tool, e.Package, e.Package)
}

// Check returns a *MissingToolError for the first of tools not in PATH, or nil.
func Check(tools ...string) error {
	var missing []string
	seen := map[string]bool{}
	for _, t := range tools {
		if seen[t] {
			continue
		}
		seen[t] = true
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(missing) == 1 {
		return &MissingToolError{Tool: missing[0], Package: packages[missing[0]]}
	}
	pkgs := map[string]bool{}
	for _, t := range missing {
		if p := packages[t]; p != "" {
			pkgs[p] = true
		}
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	return fmt.Errorf("host tools %s not found in PATH: install the Debian packages %s (apt-get install %s): %w",
		strings.Join(missing, ", "), strings.Join(names, ", "), strings.Join(names, " "),
		&MissingToolError{Tool: missing[0], Package: packages[missing[0]]})
}

// Cmd is one host command to run.
type Cmd struct {
	// Path is the tool's name or path; Args are its arguments (without the name).
	Path string
	Args []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Env is added to the process's environment (KEY=VALUE).
	Env []string
	// Stdin, if non-nil, is the command's standard input; nil means /dev/null.
	Stdin io.Reader
	// Stdout, if non-nil, receives standard output; nil means it is captured
	// and returned by Run.
	Stdout io.Writer
	// Log, if non-nil, receives standard error as it is written, in addition to
	// the tail kept for the error message.
	Log io.Writer
	// Root, if set, is a build root: the tool is taken from it and runs in
	// it, with a clean environment (see sandbox.go). Empty means the host's tool.
	Root string
	// Binds are the host directories (absolute) the tool works in, bound at
	// their own paths inside Root.
	Binds []string
	// HostFiles are host files (/etc/resolv.conf) bound read-only over
	// Root's files of the same path, which must exist; a file the host
	// lacks is left as Root has it.
	HostFiles []string
}

// Error is returned when a command fails; it keeps the tail of its stderr.
type Error struct {
	Cmd    string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

const stderrTail = 4096

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n   int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

// SysProcAttr returns the process attributes under which kib starts host
// processes so that they die with kib, even when kib is SIGKILLed:
//   - Pdeathsig: the process gets SIGKILL when its parent dies;
//   - Setpgid: it leads its own process group, which cancellation signals;
//   - as root, a new PID namespace (CLONE_NEWPID): the process is its init,
//     and when it dies the kernel kills everything left in the namespace,
//     so grandchildren (mmdebstrap's dpkg and apt, a shell's background
//     jobs) cannot outlive it.
//
// Without root there is no PID namespace; grandchildren that leave the
// process group can then survive a SIGKILL of kib.
func SysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		a.Cloneflags = syscall.CLONE_NEWPID
	}
	return a
}

// Run runs c and returns its standard output when c.Stdout is nil. The
// command runs under SysProcAttr; when ctx is cancelled the whole group gets
// SIGTERM, then SIGKILL after five seconds. If kib dies, so does the command
// and (as root) everything it started.
func Run(ctx context.Context, c Cmd) ([]byte, error) {
	var cmd *exec.Cmd
	if c.Root != "" {
		if !InRoot(c.Root, c.Path) {
			return nil, fmt.Errorf("tool %q is not in the build root %s: add the package that ships it to the distro's build_packages", c.Path, c.Root)
		}
		self, env, attr, cleanup, err := sandboxed(c)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		cmd = exec.CommandContext(ctx, self)
		cmd.Env = env
		// The sandbox's mount namespace, and death with kib as for any command.
		pa := SysProcAttr()
		pa.Cloneflags |= attr.Cloneflags
		cmd.SysProcAttr = pa
	} else {
		if _, err := exec.LookPath(c.Path); err != nil {
			return nil, &MissingToolError{Tool: c.Path, Package: packages[c.Path]}
		}
		cmd = exec.CommandContext(ctx, c.Path, c.Args...)
		cmd.Dir = c.Dir
		cmd.Env = append(os.Environ(), c.Env...)
		cmd.SysProcAttr = SysProcAttr()
	}
	cmd.Stdin = c.Stdin
	var out bytes.Buffer
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	} else {
		cmd.Stdout = &out
	}
	tail := &tailBuffer{n: stderrTail}
	if c.Log != nil {
		cmd.Stderr = io.MultiWriter(tail, c.Log)
	} else {
		cmd.Stderr = tail
	}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		// Make sure nothing of the group outlives us.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return out.Bytes(), &Error{Cmd: shorten(c.Path+" "+strings.Join(c.Args, " "), 300), Err: err, Stderr: string(tail.buf)}
	}
	return out.Bytes(), nil
}

// shorten cuts s to at most n bytes, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
