package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/store"
)

// TestBuildOnMinimalHost builds a qcow2 image twice from one manifest: on
// this host, and with kib alone in an otherwise empty root (no shell, no
// apt, no keyring, no mke2fs, no GRUB, no qemu-img, no dpkg, no libraries:
// only the kernel, kib and the resolver's configuration). Every tool runs in
// the manifest's pinned build root, so the two images are the same bits, and
// build-info.json names the build root. In the minimal root, `kib manifest`
// first resolves the same request with apt in a root kib bootstraps, and
// prints the same manifest bytes as the host's apt.
func TestBuildOnMinimalHost(t *testing.T) {
	// Two cold qcow2 builds and a static kib: its own target, make
	// test-minimal-host, keeps it out of make test's time.
	if os.Getenv("KIB_TEST_MINIMAL_HOST") == "" {
		t.Skip("set KIB_TEST_MINIMAL_HOST=1 (make test-minimal-host) to build on a minimal host")
	}
	needsRealBuild(t)
	ctx := context.Background()
	m := generate(t, "qcow2", t.TempDir())
	if len(m.Sources.BuildDebs) == 0 || m.Pipelines[0].Name != "build" {
		t.Fatalf("the qcow2 manifest has no build root (pipelines %v)", m.Pipelines)
	}
	raw, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}

	// On this host.
	root := varTempDir(t, "kib-test-full-")
	st, err := store.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := (&Engine{Store: st, Log: testLogger(t)}).Build(ctx, m, Options{OutputDir: filepath.Join(root, "out")})
	if err != nil {
		t.Fatal(err)
	}
	full := arts[0]
	bi, err := buildinfo.Read(full.Info)
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.BuildRoot) != len(m.Sources.BuildDebs) {
		t.Errorf("build-info.json lists %d build-root packages, the manifest %d", len(bi.BuildRoot), len(m.Sources.BuildDebs))
	}
	checkSBOM(t, full, len(m.Sources.Debs)+len(m.Sources.BuildDebs))

	// In a root holding kib only. The store has the pinned sources (as
	// after a fetch), so no network is needed.
	min := varTempDir(t, "kib-test-minimal-host-")
	kib := filepath.Join(min, "kib")
	// Static, as the root has no C library either.
	gob := exec.Command("go", "build", "-o", kib, "github.com/kib-project/kib/cmd/kib")
	gob.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gob.CombinedOutput(); err != nil {
		t.Fatalf("building kib: %v\n%s", err, out)
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", "out", "etc"} {
		if err := os.Mkdir(filepath.Join(min, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Name resolution, which any host has; kib's own resolver (Go's) and
	// apt in its root read it.
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(min, "etc/resolv.conf"), resolv, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(min, "blueprint.toml"), []byte(testBlueprint), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(min, "manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(min, "store")
	copyDir(t, filepath.Join(st.Dir(), "sources"), filepath.Join(storeDir, "sources"))
	entries, _ := os.ReadDir(min)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "blueprint.toml dev etc kib manifest.json out proc store sys tmp" {
		t.Fatalf("minimal root holds %s", got)
	}
	// The test harness enters the root with the host's unshare, making it a
	// mount point as a container's root is; inside it, kib is alone. The
	// command's output goes to $2 (a host path).
	inRoot := func(what, out string, args ...string) {
		t.Helper()
		script := `mount --bind "$1" "$1" && mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && mount --rbind /sys "$1/sys" && ` +
			`root=$1 out=$2 && shift 2 && PATH=/ exec /usr/sbin/chroot "$root" /kib "$@" >"$out"`
		cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", min, out}, args...)...)
		// The harness's own tools (sh, mount, chroot) come from the host;
		// kib inside the root gets PATH=/, where nothing but kib is.
		cmd.Env = []string{"HOME=/", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		var log bytes.Buffer
		cmd.Stderr = &log
		if err := cmd.Run(); err != nil {
			t.Fatalf("kib %s in a minimal root: %v\n%s", what, err, log.String())
		}
		t.Logf("kib %s in a minimal root:\n%s", what, log.String())
	}

	// No apt and no keyring here: kib bootstraps apt's root from the
	// archive, verified with the keyring it ships.
	minManifest := filepath.Join(root, "manifest-minimal-host.json")
	inRoot("manifest", minManifest, "manifest", "--blueprint", "/blueprint.toml", "qcow2")
	got, err := os.ReadFile(minManifest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), raw) {
		t.Errorf("kib manifest in the minimal root (apt in kib's root) differs from the host's apt's manifest:\n%s\nvs\n%s", got, raw)
	}

	inRoot("build", filepath.Join(root, "build-minimal-host.out"), "build", "--manifest", "/manifest.json", "--store", "/store", "--output-dir", "/out")
	var minInfo buildinfo.BuildInfo
	data, err := os.ReadFile(filepath.Join(min, "out", full.Export.Name, "build-info.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &minInfo); err != nil {
		t.Fatal(err)
	}
	if minInfo.SHA256 != full.SHA256 {
		t.Errorf("%s: sha256 %s in the minimal root, %s on the full host", full.Export.Filename, minInfo.SHA256, full.SHA256)
	}
}
