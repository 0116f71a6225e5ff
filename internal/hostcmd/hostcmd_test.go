package hostcmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
