package hostcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// A command with Cmd.Root set runs inside a build root: kib re-executes
// itself (/proc/self/exe) in a new mount namespace; that child, before it
// does anything else, assembles a root file system on a tmpfs from the build
// root's /usr and /etc, the host's /dev, /proc and /sys, fresh /tmp and /run,
// and the directories the command works in bound at their own paths, then
// chroots there and executes the tool. Nothing of the host's tools, libraries
// or configuration is visible to it, and the mounts vanish with the process.

// sandboxEnv carries the sandbox's spec from kib to its re-executed child.
const sandboxEnv = "_KIB_SANDBOX"

// sandboxSpec is what the child sets up.
type sandboxSpec struct {
	// Root is the build root's directory.
	Root string `json:"root"`
	// Stage is an empty directory the new root is assembled on.
	Stage string `json:"stage"`
	// Binds are host directories bound read-write at the same path.
	Binds []string `json:"binds"`
	// Files are host files bound read-only over the root's.
	Files []string `json:"files,omitempty"`
	// Dir is the working directory inside the new root.
	Dir  string   `json:"dir"`
	Path string   `json:"path"`
	Args []string `json:"args"`
}

// sandboxPATH is the PATH tools see inside a build root.
const sandboxPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Every binary that imports hostcmd (kib, and the test binaries of the
// packages that build images) serves as the build root's entry point: in a
// process kib started to run a tool in a build root, the package's init sets
// the root up and executes the tool, before main or any test runs.
func init() { enterIfSandbox() }

// enterIfSandbox sets up the build root and executes the tool when this
// process was started for that, never returning; elsewhere it returns at
// once.
func enterIfSandbox() {
	raw, ok := os.LookupEnv(sandboxEnv)
	if !ok {
		return
	}
	os.Unsetenv(sandboxEnv)
	var spec sandboxSpec
	err := json.Unmarshal([]byte(raw), &spec)
	if err == nil {
		err = enterSandbox(&spec)
	}
	fmt.Fprintf(os.Stderr, "kib build root: %v\n", err)
	os.Exit(127)
}

// enterSandbox is the child's part; it only returns on error.
func enterSandbox(s *sandboxSpec) error {
	// Mounts made below must not propagate to the host's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		if errors.Is(err, syscall.EINVAL) {
			return errors.New("making mounts private: / is not a mount point (kib runs in a plain chroot?); " +
				"make the root directory a mount point first (mount --bind DIR DIR), as containers do")
		}
		return fmt.Errorf("making mounts private: %w", err)
	}
	nr := s.Stage
	if err := syscall.Mount("kib-root", nr, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mounting the root tmpfs: %w", err)
	}
	bind := func(src, dst string, ro bool) error {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s: %w", src, err)
		}
		if ro {
			if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_REC, ""); err != nil {
				return fmt.Errorf("making %s read-only: %w", src, err)
			}
		}
		return nil
	}
	for _, d := range []string{"usr", "etc"} {
		if err := bind(filepath.Join(s.Root, d), filepath.Join(nr, d), true); err != nil {
			return err
		}
	}
	// /var/lib/dpkg of the build root, read-only, for tools that ask dpkg.
	if fi, err := os.Stat(filepath.Join(s.Root, "var/lib/dpkg")); err == nil && fi.IsDir() {
		if err := bind(filepath.Join(s.Root, "var/lib/dpkg"), filepath.Join(nr, "var/lib/dpkg"), true); err != nil {
			return err
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		target, err := os.Readlink(filepath.Join(s.Root, l))
		if err != nil {
			continue // not in this build root
		}
		if err := os.Symlink(target, filepath.Join(nr, l)); err != nil {
			return err
		}
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		if err := bind("/"+d, filepath.Join(nr, d), false); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "run", "var/tmp", "root"} {
		p := filepath.Join(nr, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount("kib-"+strings.ReplaceAll(d, "/", "-"), p, "tmpfs", 0, "mode=1777"); err != nil {
			return fmt.Errorf("mounting /%s: %w", d, err)
		}
	}
	for _, b := range s.Binds {
		if err := bind(b, filepath.Join(nr, b), false); err != nil {
			return err
		}
	}
	for _, f := range s.Files {
		dst := filepath.Join(nr, f)
		if _, err := os.Stat(f); err != nil {
			continue // the host has none: the root's stays
		}
		if fi, err := os.Stat(dst); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("binding %s: the build root has no file there to bind over", f)
		}
		if err := syscall.Mount(f, dst, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", f, err)
		}
		if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", f, err)
		}
	}
	if err := syscall.Chroot(nr); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	os.Setenv("PATH", sandboxPATH)
	path, err := exec.LookPath(s.Path)
	if err != nil {
		return fmt.Errorf("tool %q is not in the build root: %w", s.Path, err)
	}
	return syscall.Exec(path, append([]string{s.Path}, s.Args...), os.Environ())
}

// sandboxed turns c into the command that runs it inside c.Root: the path
// of kib itself, the environment carrying the spec, and the clone flags of a
// new mount namespace.
func sandboxed(c Cmd) (path string, env []string, attr *syscall.SysProcAttr, cleanup func(), err error) {
	for _, d := range c.Binds {
		if !filepath.IsAbs(d) {
			return "", nil, nil, nil, fmt.Errorf("build root: bind %q is not an absolute path", d)
		}
		if d == "/usr" || d == "/etc" || strings.HasPrefix(d, "/usr/") || strings.HasPrefix(d, "/etc/") {
			return "", nil, nil, nil, fmt.Errorf("build root: %s is under /usr or /etc, which the build root provides; use a store elsewhere", d)
		}
	}
	stage, err := os.MkdirTemp("", "kib-root-")
	if err != nil {
		return "", nil, nil, nil, err
	}
	spec, err := json.Marshal(sandboxSpec{Root: c.Root, Stage: stage, Binds: c.Binds, Files: c.HostFiles, Dir: c.Dir, Path: c.Path, Args: c.Args})
	if err != nil {
		os.Remove(stage)
		return "", nil, nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		os.Remove(stage)
		return "", nil, nil, nil, err
	}
	// A clean environment: the tool sees nothing of the host's but what the
	// stage sets.
	env = append([]string{sandboxEnv + "=" + string(spec), "PATH=" + sandboxPATH, "HOME=/root"}, c.Env...)
	attr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS}
	return self, env, attr, func() { os.Remove(stage) }, nil
}

// InRoot reports whether tool exists in the build root root, looked up as
// the sandbox's PATH would.
func InRoot(root, tool string) bool {
	if strings.Contains(tool, "/") {
		_, err := os.Stat(filepath.Join(root, tool))
		return err == nil
	}
	for _, d := range filepath.SplitList(sandboxPATH) {
		p := filepath.Join(root, d, tool)
		// Resolve merged-/usr links inside root, not on the host.
		if fi, err := lstatIn(root, p); err == nil && fi.Mode()&0o111 != 0 && !fi.IsDir() {
			return true
		}
	}
	return false
}

// lstatIn stats p (inside root), following a top-level symlink such as
// /sbin -> usr/sbin relative to root.
func lstatIn(root, p string) (os.FileInfo, error) {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return nil, err
	}
	first, rest, _ := strings.Cut(rel, "/")
	if t, err := os.Readlink(filepath.Join(root, first)); err == nil && !filepath.IsAbs(t) {
		p = filepath.Join(root, t, rest)
	}
	return os.Stat(p)
}
