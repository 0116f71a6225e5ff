package hostcmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSandbox runs a shell in a build root made of the host's /usr and
// /etc (through links, so the test needs no tree of its own) and checks
// what the tool sees: the root's files, the bound directory at its own path,
// fresh /tmp, a clean environment, and nothing else of the host.
func TestSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the sandbox needs root (mount namespaces)")
	}
	root := t.TempDir()
	for _, d := range []string{"usr", "etc"} {
		if err := os.Symlink("/"+d, filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			os.Symlink(target, filepath.Join(root, l))
		}
	}
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "in"), []byte("input\n"), 0o644)
	os.WriteFile("/tmp/kib-sandbox-host-marker", nil, 0o644)
	defer os.Remove("/tmp/kib-sandbox-host-marker")
	t.Setenv("KIB_HOST_SECRET", "leak")

	out, err := Run(context.Background(), Cmd{Path: "sh", Root: root, Binds: []string{work}, Dir: work, Env: []string{"A=b"},
		Args: []string{"-c", `cat in; echo out > out; ls /; test -e /tmp/kib-sandbox-host-marker && echo leak || echo clean; echo "$A.$KIB_HOST_SECRET.$HOME"; pwd`}})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	got := strings.Join(lines, "|")
	if lines[0] != "input" || !strings.HasSuffix(got, "|clean|b../root|"+work) {
		t.Errorf("sandbox output: %s", got)
	}
	for _, l := range lines {
		if l == "home" || l == "opt" || l == "srv" {
			t.Errorf("the sandbox's / shows the host's /%s", l)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(work, "out")); string(b) != "out\n" {
		t.Errorf("the bound directory is not writable through: %q", b)
	}

	// A tool the root lacks is named.
	_, err = Run(context.Background(), Cmd{Path: "no-such-tool", Root: root})
	if err == nil || !strings.Contains(err.Error(), `tool "no-such-tool" is not in the build root`) {
		t.Errorf("missing tool: %v", err)
	}
	// A bind under the root's /usr is refused.
	_, err = Run(context.Background(), Cmd{Path: "sh", Root: root, Binds: []string{"/usr/local"}, Args: []string{"-c", "true"}})
	if err == nil || !strings.Contains(err.Error(), "under /usr or /etc") {
		t.Errorf("bind under /usr: %v", err)
	}
}
