// Package boottest boots a disk image in qemu-system-x86_64 under TCG (no
// KVM), logs in on the serial console, asks systemd how the boot went and
// powers the machine off. It is what kib's boot tests and benchmarks use.
package boottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Firmware selects how the virtual machine boots.
type Firmware int

// Firmwares.
const (
	// BIOS boots with SeaBIOS, qemu's default firmware.
	BIOS Firmware = iota
	// UEFI boots with OVMF (OVMF_CODE_4M.fd read-only, a copy of
	// OVMF_VARS_4M.fd writable).
	UEFI
)

// String returns "bios" or "uefi".
func (f Firmware) String() string {
	switch f {
	case BIOS:
		return "bios"
	case UEFI:
		return "uefi"
	}
	return fmt.Sprintf("Firmware(%d)", int(f))
}

// Default OVMF files (Debian package ovmf).
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Options says what to boot and how.
type Options struct {
	// Image is the disk image; Format its qemu format ("qcow2", "raw",
	// "vpc"); empty means qcow2. The image is never written (snapshot=on).
	Image  string
	Format string
	// Firmware is BIOS or UEFI.
	Firmware Firmware
	// Timeout bounds the whole run; qemu is killed when it passes. Zero
	// means 300 s.
	Timeout time.Duration
	// User logs in on the serial console; empty means "root". Password is
	// sent when a password prompt appears.
	User     string
	Password string
	// Memory in MiB (0 means 1024) and CPUs (0 means 2).
	Memory int
	CPUs   int
	// OVMFCode and OVMFVars override the OVMF files.
	OVMFCode string
	OVMFVars string
	// Console, if non-nil, receives everything the serial console prints.
	Console io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Result is what a boot showed.
type Result struct {
	// Firmware booted with.
	Firmware Firmware
	// LoginPrompt, Shell and PowerOff are the times from starting qemu to
	// the login prompt, to the shell prompt after logging in, and to qemu's
	// exit after poweroff.
	LoginPrompt time.Duration
	Shell       time.Duration
	PowerOff    time.Duration
	// SystemState is the output of systemctl is-system-running --wait
	// ("running", "degraded", ...).
	SystemState string
	// FailedUnits lists the failed units' names (systemctl --failed).
	FailedUnits []string
	// Console is the serial console's whole output.
	Console string
}

// TimeoutError is returned when the boot did not reach Stage before the
// deadline; qemu has been killed.
type TimeoutError struct {
	Stage   string
	Elapsed time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("boot: no %s after %s", e.Stage, e.Elapsed.Round(time.Second))
}

// console collects qemu's serial output and lets the caller wait for text.
type console struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
	tee    io.Writer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	if c.tee != nil {
		c.tee.Write(p)
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *console) snapshot() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// waitFor waits until re matches the output after byte from, returning the
// index of the match's end and the submatches.
func (c *console) waitFor(ctx context.Context, done <-chan struct{}, from int, re *regexp.Regexp) (int, []string, error) {
	for {
		s := c.snapshot()
		if from < len(s) {
			if loc := re.FindStringSubmatchIndex(s[from:]); loc != nil {
				var subs []string
				for i := 0; i+1 < len(loc); i += 2 {
					if loc[i] < 0 {
						subs = append(subs, "")
						continue
					}
					subs = append(subs, s[from+loc[i]:from+loc[i+1]])
				}
				return from + loc[1], subs, nil
			}
		}
		select {
		case <-c.notify:
		case <-done:
			return 0, nil, errors.New("qemu exited")
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}

var (
	loginRE = regexp.MustCompile(`(?m)^\S+ login: `)
	// afterRE matches what follows the user name: a password prompt, a
	// failure, or a shell prompt: Debian's "user@host:dir# ", or any line
	// ending in "# " or "$ ". Kernel messages may follow a prompt on the
	// same line, so the first two need no end of line.
	afterRE  = regexp.MustCompile(`(?m)(Password: |Login incorrect|^[^\s@]+@[^\s:]+:\S*[#$] |[#$] *$)`)
	promptRE = regexp.MustCompile(`(?m)(^[^\s@]+@[^\s:]+:\S*[#$] |[#$] *$)`)
	reportRE = regexp.MustCompile(`(?s)KIB-STATE\r?\n(.*?)\r?\nKIB-FAILED\r?\n(.*?)KIB-END`)
)

// Boot boots the image, logs in, checks systemd's state and powers off.
// It returns a *TimeoutError if a step did not happen in time; the Result
// is filled as far as the boot got.
func Boot(ctx context.Context, opts Options) (*Result, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("firmware", opts.Firmware.String(), "image", filepath.Base(opts.Image))
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 300 * time.Second
	}
	user := opts.User
	if user == "" {
		user = "root"
	}
	args, cleanup, err := qemuArgs(opts)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// An OS pipe, not io.Pipe: exec hands it to qemu directly, so no copying
	// goroutine outlives qemu waiting for input.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	con := &console{notify: make(chan struct{}, 1), tee: opts.Console}
	done := make(chan struct{})
	var runErr error
	start := time.Now()
	go func() {
		defer close(done)
		_, runErr = hostcmd.Run(ctx, hostcmd.Cmd{Path: "qemu-system-x86_64", Args: args, Stdin: stdinR, Stdout: con, Log: con})
		stdinR.Close()
	}()
	defer func() {
		cancel()
		stdinW.Close()
		<-done
	}()
	res := &Result{Firmware: opts.Firmware}
	fail := func(stage string, err error) (*Result, error) {
		res.Console = con.snapshot()
		el := time.Since(start)
		if errors.Is(err, context.DeadlineExceeded) {
			log.Error("boot: timed out", "waiting_for", stage, "elapsed", el.Round(time.Millisecond))
			return res, &TimeoutError{Stage: stage, Elapsed: el}
		}
		log.Error("boot: failed", "waiting_for", stage, "elapsed", el.Round(time.Millisecond), "err", err)
		select {
		case <-done: // runErr is set once done is closed
			if runErr != nil {
				err = fmt.Errorf("%w: %w", err, runErr)
			}
		default:
		}
		return res, fmt.Errorf("boot: waiting for %s: %w", stage, err)
	}
	send := func(s string) error {
		_, err := io.WriteString(stdinW, s)
		return err
	}

	log.Info("boot: qemu started", "timeout", timeout)
	pos, _, err := con.waitFor(ctx, done, 0, loginRE)
	if err != nil {
		return fail("login prompt", err)
	}
	res.LoginPrompt = time.Since(start)
	log.Info("boot: login prompt", "elapsed", res.LoginPrompt.Round(time.Millisecond))
	if err := send(user + "\n"); err != nil {
		return fail("login prompt", err)
	}
	for {
		var m []string
		pos, m, err = con.waitFor(ctx, done, pos, afterRE)
		if err != nil {
			return fail("shell prompt", err)
		}
		if strings.HasPrefix(m[1], "Password") {
			if err := send(opts.Password + "\n"); err != nil {
				return fail("shell prompt", err)
			}
			continue
		}
		if strings.HasPrefix(m[1], "Login incorrect") {
			return fail("shell prompt", errors.New("login incorrect"))
		}
		break
	}
	res.Shell = time.Since(start)
	log.Info("boot: logged in", "elapsed", res.Shell.Round(time.Millisecond))
	// The markers are split in the command so its echo does not match.
	// dmesg -n 1 keeps kernel messages off the console while we read it.
	if err := send("dmesg -n 1 2>/dev/null; echo KIB-''STATE; systemctl is-system-running --wait; echo KIB-''FAILED; " +
		"systemctl --failed --no-legend --plain --no-pager; echo KIB-''END\n"); err != nil {
		return fail("system state", err)
	}
	pos, m, err := con.waitFor(ctx, done, pos, reportRE)
	if err != nil {
		return fail("system state", err)
	}
	res.SystemState, res.FailedUnits = parseReport(m[1], m[2])
	log.Info("boot: system state", "state", res.SystemState, "failed_units", res.FailedUnits)
	if _, _, err := con.waitFor(ctx, done, pos, promptRE); err != nil {
		return fail("shell prompt", err)
	}
	if err := send("poweroff\n"); err != nil {
		return fail("poweroff", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fail("poweroff", ctx.Err())
	}
	res.PowerOff = time.Since(start)
	res.Console = con.snapshot()
	if runErr != nil {
		return res, fmt.Errorf("boot: qemu after poweroff: %w", runErr)
	}
	log.Info("boot: powered off", "elapsed", res.PowerOff.Round(time.Millisecond))
	return res, nil
}

// qemuArgs returns qemu's arguments and a function removing the scratch
// files they use.
func qemuArgs(opts Options) ([]string, func(), error) {
	if opts.Image == "" {
		return nil, nil, errors.New("boot: Options.Image is required")
	}
	if _, err := os.Stat(opts.Image); err != nil {
		return nil, nil, fmt.Errorf("boot: image: %w", err)
	}
	format := opts.Format
	if format == "" {
		format = "qcow2"
	}
	mem, cpus := opts.Memory, opts.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus),
		"-machine", "q35", "-nographic", "-nic", "none", "-no-reboot"}
	cleanup := func() {}
	switch opts.Firmware {
	case BIOS:
	case UEFI:
		code, vars := opts.OVMFCode, opts.OVMFVars
		if code == "" {
			code = DefaultOVMFCode
		}
		if vars == "" {
			vars = DefaultOVMFVars
		}
		data, err := os.ReadFile(vars)
		if err != nil {
			return nil, nil, fmt.Errorf("boot: OVMF variables (package ovmf): %w", err)
		}
		if _, err := os.Stat(code); err != nil {
			return nil, nil, fmt.Errorf("boot: OVMF code (package ovmf): %w", err)
		}
		dir, err := os.MkdirTemp("", "kib-boottest-")
		if err != nil {
			return nil, nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		varsCopy := filepath.Join(dir, "OVMF_VARS.fd")
		if err := os.WriteFile(varsCopy, data, 0o600); err != nil {
			cleanup()
			return nil, nil, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy)
	default:
		return nil, nil, fmt.Errorf("boot: unknown firmware %v", opts.Firmware)
	}
	args = append(args, "-drive", fmt.Sprintf("file=%s,format=%s,if=virtio,snapshot=on", opts.Image, format))
	return args, cleanup, nil
}

var (
	stateRE = regexp.MustCompile(`^(initializing|starting|running|degraded|maintenance|stopping|offline|unknown)$`)
	unitRE  = regexp.MustCompile(`^[^\s\[]+\.(service|socket|mount|automount|swap|target|timer|path|device|scope|slice)$`)
)

// parseReport reads systemctl's answers, skipping any kernel messages that
// got onto the console between them.
func parseReport(state, failed string) (string, []string) {
	st := "unknown"
	for line := range strings.Lines(state) {
		if l := strings.TrimSpace(line); stateRE.MatchString(l) {
			st = l
		}
	}
	var units []string
	for line := range strings.Lines(failed) {
		if f := strings.Fields(line); len(f) > 0 && unitRE.MatchString(f[0]) {
			units = append(units, f[0])
		}
	}
	return st, units
}
