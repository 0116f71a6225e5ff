package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a running
// command and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startKibKojid runs `kib kojid` in-process until the test ends.
func startKibKojid(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	cmd := newRootCmd()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(append([]string{"kojid"}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kib kojid: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("kib kojid did not stop")
		}
		t.Logf("kib kojid %s log:\n%s", args[3], out.String())
	})
	return out
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKojiImageBuilderBuildEndToEnd runs the whole flow with a real image
// build: kib koji image-builder-build → hub (imageBuilderBuild) → two
// `kib kojid` hosts → a tar image built for x86_64 → completeImageBuild →
// tagBuild; then download-task fetches the image back.
func TestKojiImageBuilderBuildEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real Debian image; run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("kib kojid builds images and needs root")
	}
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("alice", "secret", "image")
	hub.AddTag("debian-12-build", "x86_64 aarch64", "", nil)
	hub.AddTag("debian-12-images", "", "", nil)
	hub.AddTarget("debian-12", "debian-12-build", "debian-12-images")
	hub.AddRepo("debian-12-build")
	dir := t.TempDir()
	alicePW := writeFile(t, dir, "alice.pw", "secret\n")
	for _, h := range []string{"builder1", "builder2"} {
		hub.AddHost(h, "pw-"+h, []string{"x86_64"}, "image")
		pw := writeFile(t, dir, h+".pw", "pw-"+h+"\n")
		startKibKojid(t, "--server", hub.URL, "--user", h, "--password-file", pw,
			"--work-dir", filepath.Join(dir, h, "work"), "--state-dir", filepath.Join(dir, h, "state"),
			"--cache-dir", filepath.Join(dir, "cache"), "--interval", "200ms", "--wait-poll", "1s",
			"--min-space", "1GiB", "--max-load", "0")
	}
	out, err := runKib(t, "koji", "image-builder-build", "--server", hub.URL, "--user", "alice", "--password-file", alicePW,
		"--arch", "x86_64", "--poll-interval", "1s", "debian-12", "debian-base", "12", "tar")
	t.Logf("image-builder-build:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Created task: 1 (tar)",
		"1 imageBuilderBuild (noarch) completed successfully", "tagBuild (noarch) completed successfully"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The watcher shows the arch task opened by a builder: as its first
	// state, or as a change from free when its first poll came before a
	// builder took it.
	if !regexp.MustCompile(`imageBuilderBuildArch \(x86_64\): (free -> )?open \(builder`).MatchString(out) {
		t.Errorf("output lacks the arch task opened by a builder")
	}
	ctx := context.Background()
	c, err := hub.Connector("alice", "secret")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.GetTaskResult(ctx, 1)
	if err != nil || res != "image build results in: /mnt/koji/packages/debian-base/12/1/images" {
		t.Errorf("task result %v, %v", res, err)
	}
	b, err := c.GetBuild(ctx, "debian-base-12-1")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != koji.BuildComplete || b.TaskID == nil || *b.TaskID != 1 {
		t.Errorf("build %+v", b)
	}
	if tagged := hub.TaggedBuilds("debian-12-images"); len(tagged) != 1 || int64(tagged[0]) != b.ID {
		t.Errorf("tagged builds %v", tagged)
	}
	arcs, err := c.ListArchives(ctx, b.ID, "image")
	if err != nil {
		t.Fatal(err)
	}
	var image *koji.Archive
	for i, a := range arcs {
		if a.Filename == "debian-base-12-1.x86_64.tar.xz" {
			image = &arcs[i]
		}
	}
	if image == nil || image.Arch != "x86_64" || image.TypeName != "tar" {
		t.Fatalf("archives %+v", arcs)
	}
	comps := hub.ImageComponents(image.Filename)
	var names []string
	for _, p := range comps {
		names = append(names, p["name"].(string))
	}
	if len(comps) < 50 || !strings.Contains(" "+strings.Join(names, " ")+" ", " bash ") {
		t.Errorf("image components: %d packages %v", len(comps), names)
	}

	// download-task brings the image back, identical to the archive.
	dl := filepath.Join(dir, "download")
	out, err = runKib(t, "koji", "download-task", "--server", hub.URL, "--dir", dl, "--logs", "1")
	t.Logf("download-task:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dl, image.Filename))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != image.Checksum {
		t.Errorf("downloaded image sha256 %s, archive %s", got, image.Checksum)
	}
	for _, name := range []string{image.Filename + ".manifest.json", "build.x86_64.log", "task.x86_64.log"} {
		if _, err := os.Stat(filepath.Join(dl, name)); err != nil {
			t.Errorf("download: %v", err)
		}
	}
}

// TestKojiImageBuilderBuildBadInput checks the CLI's own checks and that a
// hub ParameterError reaches the user.
func TestKojiImageBuilderBuildBadInput(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("alice", "secret", "image")
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "secret\n")
	badBP := writeFile(t, dir, "bp.toml", "[customizations]\nhostnam = \"x\"\n")
	conn := []string{"--server", hub.URL, "--user", "alice", "--password-file", pw}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"too few", []string{"debian-12", "n", "1"}, "need TARGET NAME VERSION TYPE..., got 3"},
		{"preview both", []string{"--preview", "--no-preview", "t", "n", "1", "tar"}, "--preview and --no-preview"},
		{"bad blueprint", []string{"--blueprint", badBP, "t", "n", "1", "tar"}, "hostnam"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runKib(t, append(append([]string{"koji", "image-builder-build"}, conn...), tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (%s), want error containing %q", err, out, tc.want)
			}
		})
	}
	// A type list the CLI splits is never a hub error; an option the hub's
	// schema refuses is the hub's ParameterError.
	out, err := runKib(t, append(append([]string{"koji", "image-builder-build"}, conn...), "--nowait", "t", "n", "1", "tar", "qcow2")...)
	if err != nil || !strings.Contains(out, "creating 2 tasks, one per type") || !strings.Contains(out, "Created task: 2 (qcow2)") {
		t.Errorf("two types: %v\n%s", err, out)
	}
	out, err = runKib(t, append(append([]string{"koji", "watch-task"}, conn...), "x")...)
	if err == nil || !strings.Contains(err.Error(), `task id "x"`) {
		t.Errorf("watch-task x: %v %s", err, out)
	}
}

// TestKojidConfigExample: every key of the [kojid] table in the shipped
// example is a flag of kib kojid.
func TestKojidConfigExample(t *testing.T) {
	cmd := newKojidCmd()
	if err := applyConfigFile(cmd, "../../dist/kib.toml.example", "kojid"); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"server": "https://koji.example.org/kojihub", "interval": "1s", "max-jobs": "10", "min-space": "8GiB",
		"composer-topurl": "https://koji.example.org/kojifiles", "composer-server": ""} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
	out, err := runKib(t, "kojid", "--server", "http://127.0.0.1:9/kojihub")
	if err == nil || !strings.Contains(err.Error(), "needs the host's login") {
		t.Errorf("kojid without login: %v %s", err, out)
	}
}
