package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runKib runs the kib command in-process and returns its output and error.
func runKib(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bp := filepath.Join(dir, "bp.toml")
	os.WriteFile(bp, []byte("[customizations]\nhostnam = \"x\"\n"), 0o644)
	badManifest := filepath.Join(dir, "m.json")
	golden, err := os.ReadFile("../../internal/manifest/testdata/tar.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(badManifest, bytes.Replace(golden, []byte(`"size":`), []byte(`"size":-`), 1), 0o644)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown distro", []string{"manifest", "--distro", "fedora-99", "tar"}, []string{`unknown distro "fedora-99"`, "valid: debian-12"}},
		{"unknown arch", []string{"manifest", "--arch", "mips", "tar"}, []string{`unknown architecture "mips"`, "valid: x86_64"}},
		{"unknown type", []string{"manifest", "iso"}, []string{`unknown image type "iso"`, "container", "tar"}},
		{"blueprint key", []string{"manifest", "--blueprint", bp, "tar"}, []string{"unknown key customizations.hostnam"}},
		{"repo flag", []string{"manifest", "--repo", "ftp://x/debian", "tar"}, []string{`scheme "ftp" is not supported`}},
		{"manifest field", []string{"build", "--manifest", badManifest, "--output-dir", dir}, []string{"sources.debs[0].size"}},
		{"no output dir", []string{"build", "tar"}, []string{"--output-dir: required"}},
		{"type and manifest", []string{"build", "tar", "--manifest", badManifest, "--output-dir", dir}, []string{"not both"}},
		{"missing manifest", []string{"build", "--manifest", filepath.Join(dir, "nope.json"), "--output-dir", dir}, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runKib(t, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestMissingHostTool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("kib build checks for root first; run the tests as root")
	}
	dir := t.TempDir()
	t.Setenv("PATH", dir) // no host tools at all
	_, err := runKib(t, "build", "--manifest", "../../internal/manifest/testdata/tar.json",
		"--output-dir", filepath.Join(dir, "out"), "--store", filepath.Join(dir, "store"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"mmdebstrap", "apt-get install", "xz-utils"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// TestInterrupt starts a real build, interrupts it while mmdebstrap runs and
// checks that kib stops cleanly: no artifact, no temporary directory, no
// mount left.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real build; run without -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kib")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	store := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bin, "build", "tar", "--output-dir", out, "--store", store, "--cache-dir", filepath.Join(dir, "cache"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), `name="pipeline packages"`) {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the build did not reach the packages pipeline:\n%s", logBuf.String())
	}
	time.Sleep(3 * time.Second) // mmdebstrap is installing packages now
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an interrupted build exited 0")
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("kib did not stop within 60 s of SIGINT")
	}
	if m, _ := filepath.Glob(filepath.Join(out, "*", "*")); len(m) > 0 {
		t.Errorf("files left under the output directory: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(store, "tmp", "*")); len(m) > 0 {
		t.Errorf("temporary files left in the store: %v", m)
	}
	// Pipelines finished before the interrupt (the build root) stay in the
	// store; nothing of the interrupted one may.
	finishedPipes := regexp.MustCompile(`msg="pipeline done".* key=([0-9a-f]+)`).FindAllStringSubmatch(logBuf.String(), -1)
	objects, _ := filepath.Glob(filepath.Join(store, "objects", "*"))
	for _, o := range objects {
		finished := false
		for _, d := range finishedPipes {
			finished = finished || strings.HasPrefix(filepath.Base(o), d[1])
		}
		// The packages' uncompressed copies and extraction stubs, made
		// whole before the interrupt, stay too (a deb and the marker of a
		// complete object).
		_, debErr := os.Stat(filepath.Join(o, "deb"))
		_, completeErr := os.Stat(filepath.Join(o, ".complete"))
		if !finished && (debErr != nil || completeErr != nil) {
			t.Errorf("half-built pipeline output in the store: %s (finished pipelines: %q)", o, finishedPipes)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left below %s", dir)
	}
	if p, _ := exec.Command("pgrep", "-f", "mmdebstrap.*"+store).Output(); len(p) > 0 {
		t.Errorf("mmdebstrap still running: %s", p)
	}
}

// TestKilledBuildLeavesNoProcesses SIGKILLs kib build while mmdebstrap
// installs packages: mmdebstrap, apt and dpkg die with kib.
func TestKilledBuildLeavesNoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real build; run without -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kib")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	store := filepath.Join(dir, "store")
	cmd := exec.Command(bin, "build", "tar", "--output-dir", filepath.Join(dir, "out"), "--store", store, "--cache-dir", filepath.Join(dir, "cache"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, leave no mount below dir for TempDir's cleanup.
	t.Cleanup(func() {
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		lines := strings.Split(string(mounts), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if f := strings.Fields(lines[i]); len(f) > 4 && strings.HasPrefix(f[4], dir) {
				_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	})
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), `name="pipeline packages"`) {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the build did not reach the packages pipeline")
	}
	// Wait until mmdebstrap runs, then kill kib alone.
	deadline := time.Now().Add(time.Minute)
	for len(buildProcesses(store)) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("mmdebstrap did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // apt and dpkg are at work now
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for left := buildProcesses(dir); len(left) > 0; left = buildProcesses(dir) {
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived the SIGKILLed kib build: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildProcesses lists the processes that work below dir: their command
// line names it, or their root or working directory is inside it.
func buildProcesses(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		p := filepath.Join("/proc", e.Name())
		cl, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		root, _ := os.Readlink(filepath.Join(p, "root"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if strings.Contains(string(cl), dir) || strings.HasPrefix(root, dir) || strings.HasPrefix(cwd, dir) {
			out = append(out, e.Name()+" "+strings.ReplaceAll(string(cl), "\x00", " "))
		}
	}
	return out
}
