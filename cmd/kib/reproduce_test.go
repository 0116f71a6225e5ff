package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/reproduce"
	"github.com/kib-project/kib/internal/version"
)

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// TestReproduce builds a tar image as a user would, imports it into a hub,
// and reproduces it from there: identical; then with the image in Koji
// replaced by one with another /etc/hostname: differs, naming the file;
// then with a served file that does not match its record: refused; and a
// build made by another kib version: refused, and with --force rebuilt
// with a warning.
func TestReproduce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real Debian image twice (several minutes); run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("kib reproduce builds images and needs root")
	}
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	work := t.TempDir()
	pwFile := filepath.Join(work, "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	store := filepath.Join(work, "store")
	out := filepath.Join(work, "out")
	if o, err := runKib(t, "build", "tar", "--output-dir", out, "--store", store); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	imp := func(release, dir string) {
		t.Helper()
		if o, err := runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--password-file", pwFile,
			"--name", "debian-tar", "--version", "12", "--release", release, dir); err != nil {
			t.Fatalf("import: %v\n%s", err, o)
		}
	}
	imp("1", filepath.Join(out, "archive"))
	image := "debian-tar-12-1.x86_64.tar.xz"
	repro := func(args ...string) (string, int) {
		t.Helper()
		o, err := runKib(t, append([]string{"reproduce", "--server", hub.URL, "--store", store}, args...)...)
		if err != nil && err.Error() != "" {
			o += "kib: " + err.Error() + "\n" // as main prints it
		}
		return o, exitCode(err)
	}

	// From cold (every pipeline again, sources from the store): identical.
	o, code := repro("--output-dir", filepath.Join(work, "r1"), "debian-tar-12-1")
	sum := regexp.MustCompile(`(?m)^identical ([0-9a-f]{64}) ` + regexp.QuoteMeta(image) + `$`).FindStringSubmatch(o)
	if code != 0 || sum == nil {
		t.Fatalf("reproduce: exit %d, want 0 and identical:\n%s", code, o)
	}
	t.Logf("reproduce from cold:\n%s", o)
	local, _ := os.ReadFile(filepath.Join(out, "archive", "build-info.json"))
	if !strings.Contains(string(local), sum[1]) {
		t.Errorf("identical %s is not the sha256 in %s", sum[1], local)
	}
	if _, err := os.Stat(filepath.Join(work, "r1", "archive", "root.tar.xz")); err != nil {
		t.Errorf("the rebuilt image is not in --output-dir: %v", err)
	}

	// Another image in Koji under the same name: differs, at /etc/hostname.
	tampered := filepath.Join(work, "tampered.tar.xz")
	rewriteTar(t, filepath.Join(out, "archive", "root.tar.xz"), tampered, "./etc/hostname", "tampered\n")
	if err := hub.ReplaceArchive(1, image, tampered, false); err != nil {
		t.Fatal(err)
	}
	o, code = repro("--cached", "--output-dir", filepath.Join(work, "r2"), "1")
	if code != 1 || !strings.Contains(o, "differs "+image) || !strings.Contains(o, "first difference: ./etc/hostname: ") {
		t.Errorf("reproduce of a replaced image: exit %d, want 1, differs and ./etc/hostname:\n%s", code, o)
	}
	t.Logf("reproduce of a replaced image:\n%s", o)
	if _, err := os.Stat(filepath.Join(work, "r2", "koji", image)); err != nil {
		t.Errorf("the Koji image was not kept beside the rebuilt one: %v", err)
	}

	// A served file that is not what the hub records: refused, exit 4.
	if err := hub.ReplaceArchive(1, image, filepath.Join(out, "archive", "root.tar.xz.manifest.json"), true); err != nil {
		t.Fatal(err)
	}
	o, code = repro("--cached", "--output-dir", filepath.Join(work, "r3"), "debian-tar-12-1")
	if code != 4 || !strings.Contains(o, "the hub records") {
		t.Errorf("reproduce of a corrupted file: exit %d, want 4 and the record's checksum:\n%s", code, o)
	}

	// A build made by another kib: refused with both versions, exit 3.
	old := filepath.Join(work, "old", "archive")
	os.MkdirAll(old, 0o755)
	for _, f := range []string{"root.tar.xz", "root.tar.xz.manifest.json", "build-info.json"} {
		data, err := os.ReadFile(filepath.Join(out, "archive", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "build-info.json" {
			var bi map[string]any
			json.Unmarshal(data, &bi)
			bi["kib_version"] = "0.0.1-old"
			data, _ = json.Marshal(bi)
		}
		os.WriteFile(filepath.Join(old, f), data, 0o644)
	}
	imp("2", old)
	o, code = repro("--cached", "--output-dir", filepath.Join(work, "r4"), "debian-tar-12-2")
	if code != 3 || !strings.Contains(o, "kib 0.0.1-old") || !strings.Contains(o, "kib "+version.String()) || !strings.Contains(o, "--force") {
		t.Errorf("reproduce of another kib's build: exit %d, want 3 naming both versions and --force:\n%s", code, o)
	}
	o, code = repro("--cached", "--force", "--output-dir", filepath.Join(work, "r5"), "debian-tar-12-2")
	if code != 0 || !strings.Contains(o, "warning:") || !strings.Contains(o, "0.0.1-old") || !strings.Contains(o, "identical "+sum[1]) {
		t.Errorf("reproduce --force: exit %d, want 0 with a warning and identical:\n%s", code, o)
	}
}

// rewriteTar copies the tar.xz src to dst with the content of entry name
// replaced.
func rewriteTar(t *testing.T, src, dst, name, content string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := reproduce.Decompress(in)
	if err != nil {
		t.Fatal(err)
	}
	xz := exec.Command("xz", "-T1", "-1", "-c")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	xz.Stdout = f
	pipe, _ := xz.StdinPipe()
	if err := xz.Start(); err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(r), tar.NewWriter(pipe)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = tr
		if h.Name == name {
			found = true
			h.Size = int64(len(content))
			body = strings.NewReader(content)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	pipe.Close()
	if err := xz.Wait(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s has no %s", src, name)
	}
}
