package hostcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunOutputAndError(t *testing.T) {
	out, err := Run(context.Background(), Cmd{Path: "sh", Args: []string{"-c", "echo out; echo err >&2"}})
	if err != nil || string(out) != "out\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = Run(context.Background(), Cmd{Path: "sh", Args: []string{"-c", "echo broken >&2; exit 3"}})
	var he *Error
	if !errors.As(err, &he) || !strings.Contains(he.Stderr, "broken") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error = %v", err)
	}
}

func TestMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Run(context.Background(), Cmd{Path: "mmdebstrap"})
	var mt *MissingToolError
	if !errors.As(err, &mt) || mt.Package != "mmdebstrap" || !strings.Contains(err.Error(), "apt-get install mmdebstrap") {
		t.Fatalf("error = %v", err)
	}
	err = Check("mkfs.vfat", "xz", "xz")
	if err == nil || !strings.Contains(err.Error(), "dosfstools, xz-utils") {
		t.Fatalf("Check = %v, want both packages named once", err)
	}
}

// TestCancelKillsGroup checks that cancelling stops the command's children
// too, not just the command.
func TestCancelKillsGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-survived")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := Run(ctx, Cmd{Path: "sh", Args: []string{"-c", "(sleep 2; touch " + marker + ") & wait"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("Run did not return after cancellation")
	}
	time.Sleep(2500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a child of the cancelled command kept running")
	}
}

// TestHelperProcess is the kib stand-in of TestKilledParent: it runs a
// command whose children start grandchildren, then waits to be killed.
func TestHelperProcess(t *testing.T) {
	token := os.Getenv("HOSTCMD_HELPER_TOKEN")
	if token == "" {
		return
	}
	_, _ = Run(context.Background(), Cmd{Path: "sh", Args: []string{"-c", "sleep " + token + " & sleep " + token + " & wait"}})
	os.Exit(0)
}

// processesWith returns the pids whose command line contains s.
func processesWith(s string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestKilledParent SIGKILLs a process while a host command it started runs:
// the command and the processes that command started die with it.
func TestKilledParent(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the tests as root: grandchildren die with kib only as root (PID namespace)")
		}
		t.Skip("grandchildren die with kib only as root (PID namespace); run as root")
	}
	token := fmt.Sprintf("%d.%d", 7000+time.Now().UnixNano()%1000, os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "HOSTCMD_HELPER_TOKEN="+token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(processesWith("sleep "+token)) < 2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the helper's grandchildren did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for {
		left := processesWith("sleep " + token)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
			t.Fatalf("processes outlived their SIGKILLed parent: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
