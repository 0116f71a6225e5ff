package engine

import (
	"context"
	"testing"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/debtest"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/manifest"
)

// reuseDef has the disk image types of debian-12.yaml, with its kernel
// options: qcow2 and raw share theirs, vhd and ami have their own.
const reuseDef = `
name: testos-1
os: debian
version: "1"
codename: testos
architectures: {x86_64: amd64}
repositories:
  - {suite: testos, components: [main], fallback: "http://127.0.0.1:9/none"}
keyring: /usr/share/keyrings/debian-archive-keyring.gpg
defaults: {hostname: localhost, timezone: UTC, locale: C.UTF-8, seed: 0}
package_sets:
  base: [kib-a]
image_types:
  qcow2: {recipe: disk, export: qcow2, filename: disk.qcow2, boot_mode: hybrid, package_sets: [base], size: 1GiB,
    kernel_options: ro console=ttyS0, disk: {format: qcow2}}
  raw: {recipe: disk, export: xz, filename: disk.raw.xz, boot_mode: hybrid, package_sets: [base], size: 1GiB,
    kernel_options: ro console=ttyS0, disk: {format: xz, level: 2}}
  vhd: {recipe: disk, export: vpc, filename: disk.vhd, boot_mode: hybrid, package_sets: [base], size: 1GiB,
    kernel_options: ro console=ttyS0 rootdelay=300, disk: {format: vpc}}
  ami: {recipe: disk, export: image, filename: image.raw, boot_mode: hybrid, package_sets: [base], size: 1GiB,
    kernel_options: ro console=ttyS0 nvme_core.io_timeout=4294967295, disk: {format: raw}}
  tar: {recipe: tar, export: archive, filename: root.tar.xz, boot_mode: none, package_sets: [base],
    compression: {format: xz, level: 2}}
`

// TestKeysReuse checks what a blueprint edit and a change of image type
// reuse from the store: the package tree whenever the packages are the
// same, the raw disk when only the conversion differs (qcow2 and raw.xz),
// and nothing when a package is added.
func TestKeysReuse(t *testing.T) {
	def, err := distro.Parse([]byte(reuseDef))
	if err != nil {
		t.Fatal(err)
	}
	repo := debtest.Repo(t, debtest.Pkg{Name: "kib-a", Version: "1.0"}, debtest.Pkg{Name: "kib-extra", Version: "1.0"})
	repos, err := manifest.ResolveRepos(def, nil, []string{"[trusted=yes] file://" + repo + " ./"})
	if err != nil {
		t.Fatal(err)
	}
	solver := &depsolve.Solver{CacheDir: t.TempDir()}
	hostname := "edited"
	keys := func(typ string, bp *blueprint.Blueprint) map[string]string {
		t.Helper()
		m, err := manifest.Generate(context.Background(), solver, manifest.Request{Distro: def, Arch: "x86_64", ImageType: typ, Repos: repos, Blueprint: bp})
		if err != nil {
			t.Fatal(err)
		}
		k, err := Keys(m)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for i, p := range m.Pipelines {
			out[p.Name] = k[i]
		}
		return out
	}
	qcow2 := keys("qcow2", nil)
	edited := keys("qcow2", &blueprint.Blueprint{Customizations: &blueprint.Customizations{Hostname: &hostname,
		Files: []blueprint.File{{Path: "/etc/motd", Data: "hi\n"}}}})
	more := keys("qcow2", &blueprint.Blueprint{Packages: []blueprint.Package{{Name: "kib-extra"}}})
	raw, vhd, ami, tar := keys("raw", nil), keys("vhd", nil), keys("ami", nil), keys("tar", nil)
	for _, tt := range []struct {
		name     string
		got      map[string]string
		pipeline string
		same     bool
	}{
		{"edit: package tree", edited, "packages", true},
		{"edit: os tree", edited, "os", false},
		{"one more package: package tree", more, "packages", false},
		{"raw: package tree", raw, "packages", true},
		{"raw: os tree", raw, "os", true},
		{"raw: raw disk", raw, "image", true},
		{"vhd: package tree", vhd, "packages", true},
		{"vhd: os tree (kernel command line)", vhd, "os", false},
		{"ami: package tree", ami, "packages", true},
		{"ami: raw disk", ami, "image", false},
		{"tar: package tree", tar, "packages", true},
	} {
		if same := tt.got[tt.pipeline] == qcow2[tt.pipeline]; same != tt.same || tt.got[tt.pipeline] == "" {
			t.Errorf("%s: key %.12s, qcow2's %.12s: same=%v, want %v", tt.name, tt.got[tt.pipeline], qcow2[tt.pipeline], same, tt.same)
		}
	}
}
