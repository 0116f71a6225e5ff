package store

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelperProcess is not a test: TestTwoProcesses runs the test binary
// again with KIB_STORE_HELPER set, and then this builds one store object.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("KIB_STORE_HELPER")
	if dir == "" {
		return
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := digest([]byte("shared pipeline"))
	_, _, err = s.Object(context.Background(), key, func(_ context.Context, d string) error {
		f, err := os.OpenFile(filepath.Join(dir, "builds.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.WriteString("built\n")
		f.Close()
		time.Sleep(300 * time.Millisecond) // long enough for the other process to wait
		return os.WriteFile(filepath.Join(d, "out"), []byte("result"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoProcesses runs two processes that need the same object from one
// store at once: one builds it, the other waits and reuses it.
func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "KIB_STORE_HELPER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "builds.log"))
	if n := strings.Count(string(log), "built"); n != 1 {
		t.Fatalf("object built %d times by two processes, want once", n)
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "objects", "*"))
	tmp, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	if len(objs) != 1 || len(tmp) != 0 {
		t.Fatalf("objects %v, temp %v; want one object and no temp files", objs, tmp)
	}
}
