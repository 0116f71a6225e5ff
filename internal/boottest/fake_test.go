package boottest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeQemu puts a shell script named qemu-system-x86_64 first in PATH. It
// records its arguments and plays script (a bash body) as the serial
// console.
func fakeQemu(t *testing.T, script string) (argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	body := "#!/bin/bash\nprintf '%s\\n' \"$@\" > " + argsFile + "\n" + script
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return argsFile
}

const fakeSession = `
printf 'SeaBIOS\r\nDebian GNU/Linux 12 kibtest ttyS0\r\n\r\nkibtest login: '
read -r user; echo "user=$user" >&2
[ "$user" = kib ] || exit 3
printf 'Password: '
read -r pw; [ "$pw" = secret ] || { printf 'Login incorrect\r\n'; exit 4; }
printf 'Linux kibtest 6.1.0\r\nkib@kibtest:~$ '
read -r cmd
case "$cmd" in "dmesg -n 1"*is-system-running*) ;; *) exit 5;; esac
printf '%s\r\nKIB-STATE\r\n[   55.6] powernow_k8: Power state transitions not supported\r\ndegraded\r\nKIB-FAILED\r\nfoo.service loaded failed failed Foo\r\n[   56.1] random: crng init done\r\nbar.socket loaded failed failed Bar\r\nKIB-END\r\nkib@kibtest:~$ ' "$cmd"
read -r cmd; [ "$cmd" = poweroff ] || exit 6
printf 'reboot: Power down\r\n'
exit 0
`

func TestBootFake(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	os.WriteFile(img, []byte("x"), 0o644)
	tests := []struct {
		name     string
		fw       Firmware
		password string
		wantErr  string
		wantArgs []string
	}{
		{name: "bios", fw: BIOS, password: "secret",
			wantArgs: []string{"-accel", "tcg", "-cpu", "max", "-machine", "q35", "-nographic", "-nic", "none", "file=" + img + ",format=qcow2,if=virtio,snapshot=on"}},
		{name: "uefi", fw: UEFI, password: "secret",
			wantArgs: []string{"if=pflash,format=raw,unit=0,readonly=on,file=" + DefaultOVMFCode}},
		{name: "wrong password", fw: BIOS, password: "nope", wantErr: "login incorrect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argsFile := fakeQemu(t, fakeSession)
			res, err := Boot(context.Background(), Options{Image: img, Firmware: tt.fw, User: "kib", Password: tt.password, Timeout: 20 * time.Second})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Boot: %v\n%s", err, res.Console)
			}
			if res.SystemState != "degraded" || !slices.Equal(res.FailedUnits, []string{"foo.service", "bar.socket"}) {
				t.Errorf("state %q failed %v", res.SystemState, res.FailedUnits)
			}
			if !(res.LoginPrompt > 0 && res.LoginPrompt <= res.Shell && res.Shell <= res.PowerOff) {
				t.Errorf("times out of order: %v %v %v", res.LoginPrompt, res.Shell, res.PowerOff)
			}
			if !strings.Contains(res.Console, "Power down") {
				t.Errorf("console lacks the end:\n%s", res.Console)
			}
			raw, _ := os.ReadFile(argsFile)
			args := strings.Split(strings.TrimSpace(string(raw)), "\n")
			for _, a := range tt.wantArgs {
				if !slices.Contains(args, a) {
					t.Errorf("qemu args %q lack %q", args, a)
				}
			}
		})
	}
}

func TestBootTimeout(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(img, []byte("x"), 0o644)
	// The fake runs in its own PID namespace (hostcmd), so it cannot name
	// its pid as this process sees it: a sleep with a unique duration marks it.
	marker := fmt.Sprintf("%d.%d", 600+os.Getpid()%1000, time.Now().Nanosecond()%1000)
	fakeQemu(t, "printf 'Booting from Hard Disk...\\r\\n'\nsleep "+marker+"\n")
	start := time.Now()
	res, err := Boot(context.Background(), Options{Image: img, Format: "raw", Timeout: 2 * time.Second})
	var te *TimeoutError
	if !errors.As(err, &te) || te.Stage != "login prompt" {
		t.Fatalf("err = %v, want a *TimeoutError waiting for the login prompt", err)
	}
	if !strings.Contains(res.Console, "Booting from Hard Disk") {
		t.Errorf("console = %q", res.Console)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("Boot returned after %v", el)
	}
	if pids := running("sleep\x00" + marker + "\x00"); len(pids) > 0 {
		t.Errorf("fake qemu's sleep (pids %v) still running after the timeout", pids)
	}
}

// running lists the pids of live (not zombie) processes whose command line
// is cmdline (NUL-separated, as /proc shows it).
func running(cmdline string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || string(b) != cmdline {
			continue
		}
		if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); strings.Contains(string(st), ") Z ") {
			continue
		}
		pids = append(pids, e.Name())
	}
	return pids
}

func TestBootBadOptions(t *testing.T) {
	for _, o := range []Options{{}, {Image: "/nonexistent.qcow2"}, {Image: "/dev/null", Firmware: Firmware(7)}} {
		if _, err := Boot(context.Background(), o); err == nil {
			t.Errorf("Boot(%+v) succeeded", o)
		}
	}
}
