package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/store"
)

const testBlueprint = `
[customizations]
hostname = "kib-test"
[[customizations.group]]
name = "builders"
gid = 1500
[[customizations.user]]
name = "alice"
password = "$6$kibsalt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g."
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKibKibKibKibKibKibKibKibKibKibKibKibKibKib alice@example.org"
groups = ["builders"]
uid = 1234
[[customizations.files]]
path = "/etc/motd"
data = "built by kib\n"
mode = "0640"
user = "alice"
`

// needsRealBuild skips nothing silently: in -short mode the build tests do not
// run, otherwise their requirements must be met.
func needsRealBuild(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a real Debian image (about two minutes); run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the build tests need root (mmdebstrap root mode)")
	}
}

func generate(t *testing.T, typ, cacheDir string) *manifest.Manifest {
	t.Helper()
	return generateWith(t, typ, cacheDir, testBlueprint)
}

func generateWith(t *testing.T, typ, cacheDir, bpText string) *manifest.Manifest {
	t.Helper()
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := cat.Get("debian-12")
	host, err := depsolve.HostSources("/")
	if err != nil {
		t.Fatal(err)
	}
	repos, err := manifest.ResolveRepos(def, host, nil)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := blueprint.Parse(strings.NewReader(bpText))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Generate(context.Background(), &depsolve.Solver{CacheDir: cacheDir},
		manifest.Request{Distro: def, Arch: "x86_64", ImageType: typ, Repos: repos, Blueprint: bp})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// offlineClient fails every request, as a mirror that is gone would.
var offlineClient = &http.Client{Transport: refuseAll{}}

type refuseAll struct{}

func (refuseAll) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("the mirror is gone")
}

// editedBlueprint is testBlueprint after an edit of a file and one more
// user: the same packages, other customizations.
var editedBlueprint = strings.Replace(testBlueprint, `data = "built by kib\n"`, `data = "edited\n"`, 1) + `
[[customizations.user]]
name = "carol"
uid = 1235
`

// grownBlueprint is testBlueprint with one more package, one the package
// tree of testBlueprint grows by (no maintainer scripts, files on new
// paths only).
var grownBlueprint = testBlueprint + `
[[packages]]
name = "tree"
`

// checkGrown checks that store st made the package tree of mg by growing
// mt's: its files are mt's (hard links), and the image has the package.
func checkGrown(t *testing.T, st *store.Store, mt, mg *manifest.Manifest, grown Artifact) {
	t.Helper()
	tree := func(m *manifest.Manifest) string {
		keys, err := Keys(m)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Pipelines {
			if p.Name == manifest.PackagesPipeline {
				return filepath.Join(st.ObjectPath(keys[i]), "tree")
			}
		}
		t.Fatal("no package tree pipeline")
		return ""
	}
	small, big := tree(mt), tree(mg)
	var a, b syscall.Stat_t
	if err := syscall.Stat(filepath.Join(small, "usr/bin/bash"), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(big, "usr/bin/bash"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino {
		t.Error("the package tree with one more package was built clean, not grown from the smaller one in the store")
	}
	if _, err := os.Stat(filepath.Join(small, "usr/bin/tree")); err == nil {
		t.Error("growing changed the smaller package tree")
	}
	all := run(t, "tar", "-tJf", grown.Path)
	if !slices.Contains(strings.Split(all, "\n"), "./usr/bin/tree") {
		t.Error("the grown image has no /usr/bin/tree")
	}
}

// TestBuildReproducible builds the tar and container images of one pair of
// manifests, the tar image of an edited blueprint and that of one with one
// more package, in two stores in
// different orders and checks that they are bit-identical: store A installs
// the packages for the first tar image, reuses that package tree for the
// edited one and grows it by one package for the last, store B builds the
// edited one first and the last clean, so an image made from a reused or
// grown package tree is the image a clean build makes. It also checks that the
// second store builds without any mirror from the pinned packages it holds,
// that a warm rebuild comes from the cache, and that the customizations are
// in the image.
func TestBuildReproducible(t *testing.T) {
	needsRealBuild(t)
	ctx := context.Background()
	cache := t.TempDir()
	mt := generate(t, "tar", cache)
	mc := generate(t, "container", cache)
	me := generateWith(t, "tar", cache, editedBlueprint)
	mg := generateWith(t, "tar", cache, grownBlueprint)
	pkgTree := func(m *manifest.Manifest) *manifest.Pipeline {
		for i := range m.Pipelines {
			if m.Pipelines[i].Name == manifest.PackagesPipeline {
				return &m.Pipelines[i]
			}
		}
		t.Fatalf("no %s pipeline in the manifest", manifest.PackagesPipeline)
		return nil
	}
	if !reflect.DeepEqual(pkgTree(me), pkgTree(mt)) {
		t.Fatal("the edited blueprint's manifest has another package tree pipeline")
	}
	log := testLogger(t)

	build := func(st *store.Store, m *manifest.Manifest, out string, client *http.Client) Artifact {
		t.Helper()
		e := &Engine{Store: st, Log: log, HTTPClient: client}
		arts, err := e.Build(ctx, m, Options{OutputDir: out})
		if err != nil {
			t.Fatal(err)
		}
		if len(arts) != 1 {
			t.Fatalf("got %d artifacts", len(arts))
		}
		return arts[0]
	}
	// Stores outside /tmp (mmdebstrap empties the tree's /tmp, which hid
	// traces of store paths under /tmp), at paths of different lengths.
	root := varTempDir(t, "kib-test-")
	rootB := varTempDir(t, "kib-test-longer-store-path-")
	stA, err := store.Open(filepath.Join(root, "storeA"))
	if err != nil {
		t.Fatal(err)
	}
	outA := filepath.Join(root, "outA")
	tarA := build(stA, mt, outA, nil)
	ctrA := build(stA, mc, outA, nil)
	editA := build(stA, me, filepath.Join(root, "editA"), nil)
	grownA := build(stA, mg, filepath.Join(root, "grownA"), nil)

	// Store B holds the pinned packages only (as after a fetch long ago) and
	// the mirror is unreachable: the rebuild must not need it. It installs
	// the packages as published, each extracted whole before dpkg runs, as
	// mmdebstrap does by itself: the images must be the ones store A makes
	// from uncompressed packages and extraction stubs.
	t.Setenv("KIB_UNCOMPRESSED_DEBS", "off")
	t.Setenv("KIB_STUB_EXTRACT", "off")
	t.Setenv("KIB_BUILD_IN_MEMORY", "off")
	t.Setenv("KIB_TREE_LINK", "off")
	t.Setenv("KIB_GROW", "off")
	stB, err := store.Open(filepath.Join(rootB, "nested", "storeB"))
	if err != nil {
		t.Fatal(err)
	}
	copyDir(t, filepath.Join(stA.Dir(), "sources"), filepath.Join(stB.Dir(), "sources"))
	offline := offlineClient
	outB := filepath.Join(root, "outB")
	editB := build(stB, me, filepath.Join(root, "editB"), offline)
	tarB := build(stB, mt, outB, offline)
	ctrB := build(stB, mc, outB, offline)
	grownB := build(stB, mg, filepath.Join(root, "grownB"), offline)

	if tarA.SHA256 != tarB.SHA256 {
		t.Errorf("root.tar.xz differs between stores: %s vs %s", tarA.SHA256, tarB.SHA256)
	}
	if ctrA.SHA256 != ctrB.SHA256 {
		t.Errorf("container.tar differs between stores: %s vs %s", ctrA.SHA256, ctrB.SHA256)
	}
	if editA.SHA256 != editB.SHA256 {
		t.Errorf("edited root.tar.xz from a reused package tree %s, from a clean build %s", editA.SHA256, editB.SHA256)
	}
	if grownA.SHA256 != grownB.SHA256 {
		t.Errorf("root.tar.xz with one more package: grown from the smaller package tree %s, from a clean build %s", grownA.SHA256, grownB.SHA256)
	}
	checkGrown(t, stA, mt, mg, grownA)
	if editA.SHA256 == tarA.SHA256 {
		t.Error("the edited blueprint gave the same image")
	}
	if got := extract(t, editA.Path, "./etc/motd")["./etc/motd"]; got != "edited\n" {
		t.Errorf("edited image: /etc/motd = %q", got)
	}
	for _, a := range []Artifact{tarA, ctrA} {
		if a.Cached {
			t.Errorf("%s: first build reported as cached", a.Path)
		}
		for _, f := range []string{a.Path, a.Manifest, a.SBOM, a.Info} {
			if _, err := os.Stat(f); err != nil {
				t.Error(err)
			}
		}
	}

	warm := build(stA, mt, filepath.Join(root, "outWarm"), offline)
	if !warm.Cached || warm.SHA256 != tarA.SHA256 {
		t.Errorf("warm rebuild: cached=%v sha %s, want cached and identical", warm.Cached, warm.SHA256)
	}

	// What the engine writes is what a Koji import reads.
	for _, a := range []Artifact{tarA, ctrA} {
		if _, err := kojimeta.ReadBuildInfo(a.Info); err != nil {
			t.Errorf("kib koji import would reject %s: %v", a.Info, err)
		}
	}
	checkBuildInfo(t, tarA, "archive", "root.tar.xz")
	checkBuildInfo(t, ctrA, "container", "container.tar")
	checkSBOM(t, tarA, len(mt.Sources.Debs)+len(mt.Sources.BuildDebs))

	files := extract(t, tarA.Path, "./etc/hostname", "./etc/passwd", "./etc/group", "./etc/shadow", "./etc/motd",
		"./home/alice/.ssh/authorized_keys", "./etc/apt/sources.list")
	if got := files["./etc/hostname"]; got != "kib-test\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if !strings.Contains(files["./etc/passwd"], "alice:x:1234:") {
		t.Errorf("/etc/passwd has no alice with uid 1234:\n%s", files["./etc/passwd"])
	}
	if !strings.Contains(files["./etc/group"], "builders:x:1500:alice") {
		t.Errorf("/etc/group has no builders group with alice:\n%s", files["./etc/group"])
	}
	if !strings.Contains(files["./etc/shadow"], "alice:$6$kibsalt$") {
		t.Errorf("/etc/shadow lacks alice's password hash")
	}
	if files["./etc/motd"] != "built by kib\n" {
		t.Errorf("/etc/motd = %q", files["./etc/motd"])
	}
	if !strings.Contains(files["./home/alice/.ssh/authorized_keys"], "alice@example.org") {
		t.Errorf("authorized_keys = %q", files["./home/alice/.ssh/authorized_keys"])
	}
	if strings.Contains(files["./etc/apt/sources.list"], "file:") || !strings.Contains(files["./etc/apt/sources.list"], "bookworm") {
		t.Errorf("sources.list = %q", files["./etc/apt/sources.list"])
	}
	// The build's apt and dpkg settings do not stay in the image.
	all := run(t, "tar", "-tJf", tarA.Path)
	for _, p := range []string{"./etc/apt/apt.conf.d/99mmdebstrap", "./etc/apt/apt.conf.d/00kib-build", "./etc/dpkg/dpkg.cfg.d/00kib-build", "./etc/dpkg/dpkg.cfg.d/99mmdebstrap"} {
		if slices.Contains(strings.Split(all, "\n"), p) {
			t.Errorf("the image holds the build setting %s", p)
		}
	}
	// Nothing of the build host's paths is in the image.
	for _, p := range strings.Split(all, "\n") {
		for _, trace := range []string{"storeA", "storeB", "work-", "kib-repo", "kib-test", "/.cache/kib"} {
			if strings.Contains(p, trace) {
				t.Errorf("the image holds %s, a trace of the build host (%q)", p, trace)
			}
		}
	}
	listing := run(t, "tar", "-tvJf", tarA.Path, "./etc/motd", "./home/alice/.ssh/authorized_keys")
	if !strings.Contains(listing, "-rw-r----- 1234/0") || !strings.Contains(listing, "-rw------- 1234/") {
		t.Errorf("owners and modes:\n%s", listing)
	}

	// The container archive is a valid OCI layout with the ref annotation.
	ociDir := t.TempDir()
	run(t, "tar", "-xf", ctrA.Path, "-C", ociDir)
	var index struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	data, _ := os.ReadFile(filepath.Join(ociDir, "index.json"))
	if err := json.Unmarshal(data, &index); err != nil || len(index.Manifests) != 1 ||
		index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "debian:12" {
		t.Errorf("index.json = %s (%v)", data, err)
	}
}

// varTempDir makes a directory under /var/tmp, removed after the test.
func varTempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func checkBuildInfo(t *testing.T, a Artifact, export, file string) {
	t.Helper()
	bi, err := buildinfo.Read(a.Info) // validates every field
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(run(t, "sha256sum", a.Manifest))[0]; got != bi.ManifestSHA256 {
		t.Errorf("manifest file sha256 %s, build-info.json manifest_sha256 %s", got, bi.ManifestSHA256)
	}
	if bi.Arch != "x86_64" || bi.BootMode != "none" || bi.ExportName != export || bi.ExportFilename != file ||
		bi.SHA256 != a.SHA256 || bi.KibVersion == "" || len(bi.Packages) == 0 {
		t.Errorf("build-info.json = %+v", bi)
	}
}

func checkSBOM(t *testing.T, a Artifact, packages int) {
	t.Helper()
	data, err := os.ReadFile(a.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) != packages+1 {
		t.Errorf("SBOM: version %q, %d packages, want SPDX-2.3 with %d+1", doc.SPDXVersion, len(doc.Packages), packages)
	}
}

func extract(t *testing.T, archive string, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	run(t, "tar", append([]string{"-xJf", archive, "-C", dir}, names...)...)
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Errorf("%s: %v", n, err)
		}
		out[n] = string(b)
	}
	return out
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return string(out)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

// testWriter sends log lines to t.Log, shown for failed tests and with -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
