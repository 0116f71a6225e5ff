package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/debtest"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
)

const testDef = `
name: testos-1
os: debian
version: "1"
codename: testos
architectures: {x86_64: amd64}
repositories:
  - {suite: testos, components: [main], fallback: "http://127.0.0.1:9/none"}
keyring: /usr/share/keyrings/debian-archive-keyring.gpg
defaults: {hostname: localhost, timezone: UTC, locale: C.UTF-8, seed: 42}
package_sets:
  base: [kib-a]
image_types:
  tar:
    recipe: tar
    export: archive
    filename: root.tar.xz
    boot_mode: none
    package_sets: [base]
    compression: {format: xz, level: 2}
  container:
    recipe: container
    export: container
    filename: container.tar
    boot_mode: none
    package_sets: [base]
    container: {ref: "testos:1", cmd: [/bin/sh]}
  vhd:
    recipe: disk
    export: vpc
    filename: disk.vhd
    boot_mode: hybrid
    package_sets: [base]
    size: 1GiB
    kernel_options: ro console=ttyS0
    disk: {format: vpc}
  ami:
    recipe: disk
    export: image
    filename: image.raw
    boot_mode: hybrid
    package_sets: [base]
    size: 1GiB
    disk: {format: raw}
`

func TestGenerate(t *testing.T) {
	def, err := distro.Parse([]byte(testDef))
	if err != nil {
		t.Fatal(err)
	}
	repo := debtest.Repo(t,
		debtest.Pkg{Name: "kib-a", Version: "1.0", Depends: "kib-b"},
		debtest.Pkg{Name: "kib-b", Version: "2.0"},
		debtest.Pkg{Name: "kib-extra", Version: "0.1"},
	)
	repos, err := ResolveRepos(def, nil, []string{"[trusted=yes] file://" + repo + " ./"})
	if err != nil {
		t.Fatal(err)
	}
	bp, err := blueprint.Parse(strings.NewReader(`
[[packages]]
name = "kib-extra"
[customizations]
hostname = "builder"
[[customizations.user]]
name = "alice"
groups = ["users"]
[[customizations.files]]
path = "/etc/motd"
data = "hi\n"
`))
	if err != nil {
		t.Fatal(err)
	}
	solver := &depsolve.Solver{CacheDir: t.TempDir()}
	req := Request{Distro: def, Arch: "x86_64", ImageType: "tar", Repos: repos, Blueprint: bp}
	m1, err := Generate(context.Background(), solver, req)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Generate(context.Background(), solver, req)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := m1.Canonical()
	c2, _ := m2.Canonical()
	if !bytes.Equal(c1, c2) {
		t.Fatal("two generations against the same repository differ")
	}
	if m1.Seed != 42 || m1.SourceDateEpoch != 1717200000 {
		t.Errorf("seed %d, SOURCE_DATE_EPOCH %d; want the definition's seed 42 and the Release date 1717200000", m1.Seed, m1.SourceDateEpoch)
	}
	var names []string
	for _, d := range m1.Sources.Debs {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "kib-a,kib-b,kib-extra" {
		t.Errorf("debs = %s, want kib-a,kib-b,kib-extra", got)
	}
	if p := m1.Pipelines[0]; p.Name != "packages" || len(p.Stages) != 1 || p.Stages[0].Type != "mmdebstrap" {
		t.Errorf("first pipeline = %+v, want the package tree", p)
	}
	osp, _ := m1.Pipeline("os")
	var types []string
	for _, s := range osp.Stages {
		types = append(types, s.Type)
	}
	if got := strings.Join(types, ","); got != "tree-copy,hostname,timezone,locale,users,files,debian-finalize" {
		t.Errorf("os stages = %s", got)
	}
	var host struct{ Hostname string }
	json.Unmarshal(osp.Stages[1].Options, &host)
	if host.Hostname != "builder" {
		t.Errorf("hostname stage = %q, want the blueprint's", host.Hostname)
	}
	var fin struct{ Sources []string }
	json.Unmarshal(osp.Stages[6].Options, &fin)
	if len(fin.Sources) != 0 {
		t.Errorf("image keeps host-only file:// sources: %v", fin.Sources)
	}
	if m1.Exports[0] != (Export{Name: "archive", Filename: "root.tar.xz", BootMode: "none"}) {
		t.Errorf("export = %+v", m1.Exports[0])
	}

	seed := int64(7)
	req.Seed, req.ImageType = &seed, "container"
	mc, err := Generate(context.Background(), solver, req)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Seed != 7 || mc.Pipelines[2].Stages[0].Type != "oci-archive" {
		t.Errorf("container manifest: seed %d, stage %s", mc.Seed, mc.Pipelines[2].Stages[0].Type)
	}
}

func TestGenerateErrors(t *testing.T) {
	def, err := distro.Parse([]byte(testDef))
	if err != nil {
		t.Fatal(err)
	}
	repo := debtest.Repo(t, debtest.Pkg{Name: "kib-a", Version: "1.0"})
	repos, _ := ResolveRepos(def, nil, []string{"[trusted=yes] file://" + repo + " ./"})
	solver := &depsolve.Solver{CacheDir: t.TempDir()}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"image type", Request{Distro: def, Arch: "x86_64", ImageType: "qcow9", Repos: repos}, `unknown image type "qcow9" (valid: ami, container, tar, vhd)`},
		{"arch", Request{Distro: def, Arch: "riscv128", ImageType: "tar", Repos: repos}, `unknown architecture "riscv128" (valid: x86_64)`},
		{"package", Request{Distro: def, Arch: "x86_64", ImageType: "tar", Repos: repos,
			Blueprint: &blueprint.Blueprint{Packages: []blueprint.Package{{Name: "kib-missing"}}}}, "package not found in the repositories: kib-missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(context.Background(), solver, tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestGenerateDisk(t *testing.T) {
	def, err := distro.Parse([]byte(testDef))
	if err != nil {
		t.Fatal(err)
	}
	repo := debtest.Repo(t, debtest.Pkg{Name: "kib-a", Version: "1.0"})
	repos, _ := ResolveRepos(def, nil, []string{"[trusted=yes] file://" + repo + " ./"})
	solver := &depsolve.Solver{CacheDir: t.TempDir()}
	bp := &blueprint.Blueprint{Customizations: &blueprint.Customizations{
		Kernel: &blueprint.Kernel{Append: "quiet"}, Disk: &blueprint.Disk{MinSize: "2GiB"}}}
	m, err := Generate(context.Background(), solver, Request{Distro: def, Arch: "x86_64", ImageType: "vhd", Repos: repos, Blueprint: bp})
	if err != nil {
		t.Fatal(err)
	}
	var layout []string
	for _, p := range m.Pipelines {
		var types []string
		for _, s := range p.Stages {
			types = append(types, s.Type)
		}
		layout = append(layout, p.Name+":"+strings.Join(types, ","))
	}
	want := "packages:mmdebstrap os:tree-copy,hostname,timezone,locale,fstab,debian-finalize image:gpt,esp,ext4,grub-efi,grub-bios vpc:qemu-img"
	if got := strings.Join(layout, " "); got != want {
		t.Errorf("pipelines\n got %s\nwant %s", got, want)
	}
	var gpt struct{ Size int64 }
	json.Unmarshal(m.Pipelines[2].Stages[0].Options, &gpt)
	if gpt.Size != 2<<30 {
		t.Errorf("disk size %d, want the blueprint's 2 GiB", gpt.Size)
	}
	var fin struct {
		KernelCmdline string `json:"kernel_cmdline"`
	}
	json.Unmarshal(m.Pipelines[1].Stages[5].Options, &fin)
	if !strings.HasPrefix(fin.KernelCmdline, "root=UUID=") || !strings.HasSuffix(fin.KernelCmdline, "ro console=ttyS0 quiet") {
		t.Errorf("kernel command line %q", fin.KernelCmdline)
	}
	if m.Exports[0] != (Export{Name: "vpc", Filename: "disk.vhd", BootMode: "hybrid"}) {
		t.Errorf("export %+v", m.Exports[0])
	}

	size := int64(1<<30 + 1)
	m, err = Generate(context.Background(), solver, Request{Distro: def, Arch: "x86_64", ImageType: "ami", Repos: repos, Size: &size})
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(m.Pipelines[2].Stages[0].Options, &gpt)
	if len(m.Pipelines) != 3 || m.Exports[0].Name != "image" || gpt.Size != 1<<30+1<<20 {
		t.Errorf("ami: %d pipelines, export %q, size %d (want --size rounded up to 1 MiB)", len(m.Pipelines), m.Exports[0].Name, gpt.Size)
	}
	small := int64(100 << 20)
	_, err = Generate(context.Background(), solver, Request{Distro: def, Arch: "x86_64", ImageType: "ami", Repos: repos, Size: &small})
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("100 MiB disk: %v", err)
	}
}

// TestGenerateBuildRoot checks that a definition's build root becomes a
// pinned pipeline of its own that every other pipeline runs its tools in.
func TestGenerateBuildRoot(t *testing.T) {
	def, err := distro.Parse([]byte(testDef + `
build_root:
  packages: [kib-tools]
  alternatives: [/usr/bin/awk=/usr/bin/mawk]
`))
	if err != nil {
		t.Fatal(err)
	}
	repo := debtest.Repo(t,
		debtest.Pkg{Name: "kib-a", Version: "1.0", Depends: "kib-b"},
		debtest.Pkg{Name: "kib-b", Version: "2.0"},
		debtest.Pkg{Name: "kib-tools", Version: "3.0", Depends: "kib-b"},
	)
	repos, err := ResolveRepos(def, nil, []string{"[trusted=yes] file://" + repo + " ./"})
	if err != nil {
		t.Fatal(err)
	}
	solver := &depsolve.Solver{CacheDir: t.TempDir()}
	m, err := Generate(context.Background(), solver, Request{Distro: def, Arch: "x86_64", ImageType: "vhd", Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	var image, build []string
	for _, d := range m.Sources.Debs {
		image = append(image, d.Name)
	}
	for _, d := range m.Sources.BuildDebs {
		build = append(build, d.Name)
	}
	if got := strings.Join(image, ","); got != "kib-a,kib-b" {
		t.Errorf("debs = %s, want kib-a,kib-b", got)
	}
	if got := strings.Join(build, ","); got != "kib-b,kib-tools" {
		t.Errorf("build_debs = %s, want kib-b,kib-tools", got)
	}
	if p := m.Pipelines[0]; p.Name != "build" || p.Kind != KindTree || p.Build != "" || len(p.Stages) != 1 || p.Stages[0].Type != "debs-unpack" {
		t.Fatalf("first pipeline = %+v, want the build root", p)
	}
	var unpack struct {
		Debs         []string
		Alternatives []string
	}
	json.Unmarshal(m.Pipelines[0].Stages[0].Options, &unpack)
	if len(unpack.Debs) != 2 || unpack.Debs[0] != m.Sources.BuildDebs[0].SHA256 || len(unpack.Alternatives) != 1 {
		t.Errorf("debs-unpack options = %+v", unpack)
	}
	for _, p := range m.Pipelines[1:] {
		if p.Build != "build" {
			t.Errorf("pipeline %s runs its tools in %q, want the build root", p.Name, p.Build)
		}
	}
	// The manifest round-trips, and a build naming a missing or non-tree
	// pipeline is refused by field.
	c, _ := m.Canonical()
	if _, err := Parse(bytes.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	bad := *m
	bad.Pipelines = append([]Pipeline(nil), m.Pipelines...)
	bad.Pipelines[1].Build = "vpc"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `pipelines[1].build: pipeline "vpc" must come earlier`) {
		t.Errorf("validate of a build root that comes later: %v", err)
	}
	bad.Pipelines[4].Build = "image"
	bad.Pipelines[1].Build = "build"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "a build root must be a tree") {
		t.Errorf("validate of a file build root: %v", err)
	}
}
