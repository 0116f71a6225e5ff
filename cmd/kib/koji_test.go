package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// writeExport writes an export directory as the local build does.
func writeExport(t *testing.T, outdir, exportName, exportFilename, imageType string, image []byte) string {
	t.Helper()
	dir := filepath.Join(outdir, exportName)
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(exportFilename)), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, exportFilename)
	manifest := []byte(`{"pipelines":[]}`)
	for p, data := range map[string][]byte{img: image, img + ".manifest.json": manifest, img + ".image-os.spdx.json": []byte(`{"spdxVersion":"SPDX-2.3"}`),
		img + ".build.log": []byte("level=INFO msg=\"pipeline os\"\n")} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(image)
	msum := sha256.Sum256(manifest)
	bi := map[string]any{"arch": "x86_64", "boot_mode": "hybrid", "export_name": exportName, "export_filename": exportFilename,
		"kib_version": "0.1.0-dev", "sha256": hex.EncodeToString(sum[:]), "size": len(image), "distro": "debian-12",
		"image_type": imageType, "packages": []any{map[string]any{"name": "bash", "version": "5.2.15-2+b7", "arch": "amd64", "sha256": hex.EncodeToString(sum[:])}},
		"manifest_sha256": hex.EncodeToString(msum[:])}
	raw, _ := json.Marshal(bi)
	if err := os.WriteFile(filepath.Join(dir, "build-info.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestKojiImport(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	outdir := t.TempDir()
	qcow := writeExport(t, outdir, "qcow2", "disk.qcow2", "qcow2", bytes.Repeat([]byte("q"), 5000))
	tar := writeExport(t, outdir, "archive", "root.tar.xz", "tar", bytes.Repeat([]byte("t"), 3000))
	out, err := runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--password-file", pwFile,
		"--name", "debian-cloud", "--version", "12", "--chunk-size", "1024", qcow, filepath.Join(tar, "root.tar.xz"))
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if !strings.Contains(out, "imported build 1 debian-cloud-12-1 (2 images)") || !strings.Contains(out, "uploaded debian-cloud-12-1.x86_64.qcow2 (5000 bytes)") {
		t.Errorf("output %q", out)
	}
	bdir := filepath.Join(hub.Dir, "packages", "debian-cloud", "12", "1")
	for _, f := range []string{"images/debian-cloud-12-1.x86_64.qcow2", "images/debian-cloud-12-1.x86_64.tar.xz",
		"images/debian-cloud-12-1.x86_64.qcow2.manifest.json", "images/debian-cloud-12-1.x86_64.tar.xz.image-os.spdx.json", "metadata.json"} {
		if _, err := os.Stat(filepath.Join(bdir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	// A second import of the same NVR is refused and nothing is left reserved.
	out, err = runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--password-file", pwFile,
		"--name", "debian-cloud", "--version", "12", "--release", "1", qcow)
	if err == nil || !strings.Contains(err.Error(), "Build already exists") {
		t.Errorf("re-import: %v\n%s", err, out)
	}
	// koji call reads it back.
	out, err = runKib(t, "koji", "call", "--server", hub.URL, "listArchives", "buildID=1", "type=image")
	if err != nil {
		t.Fatal(err)
	}
	var archives []map[string]any
	if err := json.Unmarshal([]byte(out), &archives); err != nil || len(archives) != 6 {
		t.Fatalf("listArchives: %v %s", err, out)
	}
	c, _ := koji.New(hub.URL, koji.Options{})
	b, err := c.GetBuild(context.Background(), "debian-cloud-12-1")
	if err != nil {
		t.Fatal(err)
	}
	ti := b.Extra["typeinfo"].(map[string]any)["image"].(map[string]any)
	if _, ok := ti["debian-cloud-12-1.x86_64.qcow2"]; !ok || b.Extra["osbuild_manifest"] == nil {
		t.Errorf("build extra %v", b.Extra)
	}
	// The build logs kib build wrote beside the images are the build's logs.
	logs, err := c.GetBuildLogs(context.Background(), b.ID)
	var names []string
	for _, l := range logs {
		names = append(names, l.Name)
	}
	want := "cg_import.log debian-cloud-12-1.x86_64.qcow2.build.log debian-cloud-12-1.x86_64.tar.xz.build.log"
	slices.Sort(names)
	if err != nil || strings.Join(names, " ") != want {
		t.Errorf("getBuildLogs = %v, %v; want %s", names, err, want)
	}
}

func TestKojiImportRefundsOnFailure(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	t.Setenv("KIB_KOJI_PASSWORD", "pw")
	outdir := t.TempDir()
	dir := writeExport(t, outdir, "qcow2", "disk.qcow2", "qcow2", []byte("image"))
	hub.Inject(kojitest.Injection{Method: "CGImport", Fault: &koji.Fault{Code: koji.CodeGeneric, String: "policy violation"}})
	_, err := runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--name", "img", "--version", "1", "--release", "1", dir)
	if err == nil || !strings.Contains(err.Error(), "policy violation") {
		t.Fatalf("err = %v", err)
	}
	c, _ := koji.New(hub.URL, koji.Options{})
	b, err := c.GetBuild(context.Background(), "img-1-1")
	if err != nil || b.State != koji.BuildFailed {
		t.Errorf("build after failed import: %+v %v", b, err)
	}
}

func TestKojiFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"koji", "import", "--name", "n", "--version", "1", "x"}, "--server"},
		{[]string{"koji", "import", "--server", "http://h/kojihub", "--name", "n", "--version", "1", "x"}, "needs a login"},
		{[]string{"koji", "import", "--server", "http://h/kojihub", "--user", "u", "--cert", "c", "x"}, "choose one"},
		{[]string{"koji", "call", "--server", "ftp://h", "echo"}, "scheme"},
		{[]string{"koji", "call", "--server", "http://h/kojihub", "--principal", "kib@EXAMPLE.COM", "echo"}, "go together"},
		{[]string{"koji", "call", "--server", "http://h/kojihub", "--principal", "kib", "--keytab", "/nonexistent", "echo"}, "must be name@REALM"},
	} {
		if _, err := runKib(t, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// An image changed after the local build (same size, other bytes) is caught
// by the hub at CGImport, where the digest from build-info.json is checked.
func TestKojiImportCatchesChangedImage(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	t.Setenv("KIB_KOJI_PASSWORD", "pw")
	dir := writeExport(t, t.TempDir(), "qcow2", "disk.qcow2", "qcow2", []byte("original"))
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--name", "img", "--version", "1", "--release", "1", dir)
	if err == nil || !strings.Contains(err.Error(), "File checksum mismatch") {
		t.Fatalf("err = %v, want the hub's checksum mismatch", err)
	}
	c, _ := koji.New(hub.URL, koji.Options{})
	if b, err := c.GetBuild(context.Background(), "img-1-1"); err != nil || b.State != koji.BuildFailed {
		t.Errorf("build after a failed import: %+v %v", b, err)
	}
}

// TestReproduceRefusals checks what kib reproduce refuses before it builds,
// with its exit codes.
func TestReproduceRefusals(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	outdir := t.TempDir()
	tar := writeExport(t, outdir, "archive", "root.tar.xz", "tar", bytes.Repeat([]byte("t"), 3000))
	mf, err := os.ReadFile("../../internal/manifest/testdata/tar.json")
	if err != nil {
		t.Fatal(err)
	}
	// A real manifest, and a build-info.json naming another kib.
	os.WriteFile(filepath.Join(tar, "root.tar.xz.manifest.json"), mf, 0o644)
	var bi map[string]any
	raw, _ := os.ReadFile(filepath.Join(tar, "build-info.json"))
	json.Unmarshal(raw, &bi)
	msum := sha256.Sum256(mf)
	bi["manifest_sha256"], bi["kib_version"] = hex.EncodeToString(msum[:]), "0.0.1-old"
	raw, _ = json.Marshal(bi)
	os.WriteFile(filepath.Join(tar, "build-info.json"), raw, 0o644)
	qcow := writeExport(t, outdir, "qcow2", "disk.qcow2", "qcow2", bytes.Repeat([]byte("q"), 5000))
	if out, err := runKib(t, "koji", "import", "--server", hub.URL, "--user", "kib", "--password-file", pwFile,
		"--name", "img", "--version", "12", "--release", "1", tar, qcow); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	store := filepath.Join(t.TempDir(), "store")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no build", []string{"--server", hub.URL}, 2, "give one build"},
		{"bad flag", []string{"--server", hub.URL, "--bogus", "img-12-1"}, 2, "unknown flag: --bogus"},
		{"no server", []string{"img-12-1"}, 2, "--server"},
		{"no topurl", []string{"--server", "http://127.0.0.1:1/hub", "img-12-1"}, 2, "--topurl: required"},
		{"bad build", []string{"--server", hub.URL, "img"}, 2, "not a build ID and not an NVR"},
		{"missing build", []string{"--server", hub.URL, "img-12-9"}, 2, "img-12-9"},
		{"two images", []string{"--server", hub.URL, "img-12-1"}, 2, "choose one with --image: img-12-1.x86_64.tar.xz, img-12-1.x86_64.qcow2"},
		{"other kib", []string{"--server", hub.URL, "--image", "archive", "img-12-1"}, 3, "built by kib 0.0.1-old"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"reproduce", "--store", store, "--output-dir", filepath.Join(t.TempDir(), "out")}, tt.args...)
			out, err := runKib(t, args...)
			if code := exitCode(err); code != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("exit %d (%v), want %d and %q\n%s", code, err, tt.code, tt.want, out)
			}
		})
	}
}
