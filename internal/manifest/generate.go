package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/stageopt"
	"github.com/kib-project/kib/internal/version"
)

// Request is what someone wants built.
type Request struct {
	Distro    *distro.Definition
	Arch      string
	ImageType string
	// Repos are the repositories to resolve packages from; see ResolveRepos.
	Repos     []depsolve.Repo
	Blueprint *blueprint.Blueprint
	// Seed, if set, overrides the distro's default seed.
	Seed *int64
	// SourceDateEpoch, if set, overrides the default: the date of the newest
	// repository Release file.
	SourceDateEpoch *int64
	// Size, if set, is the disk size in bytes of a disk image; it overrides
	// the blueprint's customizations.disk.minsize and the definition's size.
	Size *int64
	// Keyrings are the keys of repositories that are not signed by the
	// distro's keyring: Repos name them by HostPath, the image's apt
	// sources by ImagePath, where the image gets a copy.
	Keyrings []Keyring
}

// Keyring is an OpenPGP key file a repository is verified with.
type Keyring struct {
	HostPath  string
	ImagePath string
	// Data is the ASCII-armored key.
	Data string
}

// Solver resolves package sets; *depsolve.Solver is one.
type Solver interface {
	Solve(ctx context.Context, req depsolve.Request) (*depsolve.Result, error)
}

// ResolveRepos returns the repositories of a request: the --repo values if any
// are given, else each of the distro's suites from the machine's apt sources,
// else from the definition's fallback mirror.
func ResolveRepos(def *distro.Definition, host []depsolve.SourceEntry, flags []string) ([]depsolve.Repo, error) {
	if len(flags) > 0 {
		base := def.Repositories[0]
		repos := make([]depsolve.Repo, 0, len(flags))
		for _, f := range flags {
			r, err := depsolve.ParseRepoFlag(f, base.Suite, base.Components)
			if err != nil {
				return nil, err
			}
			if !r.Trusted && r.SignedBy == "" {
				r.SignedBy, r.Keyring = def.Keyring, def.KeyringData
			}
			repos = append(repos, r)
		}
		return repos, nil
	}
	repos := make([]depsolve.Repo, 0, len(def.Repositories))
	for _, dr := range def.Repositories {
		url := depsolve.MirrorFor(host, dr.Suite, dr.Components)
		if url == "" {
			url = strings.TrimRight(dr.Fallback, "/")
		}
		repos = append(repos, depsolve.Repo{URL: url, Suite: dr.Suite, Components: dr.Components, SignedBy: def.Keyring, Keyring: def.KeyringData})
	}
	return repos, nil
}

// Generate resolves req's packages with solver and returns the pinned
// manifest.
func Generate(ctx context.Context, solver Solver, req Request) (*Manifest, error) {
	def := req.Distro
	it, err := def.ImageType(req.ImageType)
	if err != nil {
		return nil, err
	}
	debArch, err := def.DebArch(req.Arch)
	if err != nil {
		return nil, err
	}
	if len(req.Repos) == 0 {
		return nil, errors.New("request: no repositories")
	}
	c := customizations(def, req.Blueprint)
	for _, k := range req.Keyrings {
		c.files = append(c.files, stageopt.FileSpec{Path: k.ImagePath, Data: k.Data, Mode: "0644"})
	}
	var disk *stageopt.HybridDisk
	if it.Recipe == "disk" {
		if disk, err = hybridDisk(it, req, c); err != nil {
			return nil, err
		}
	}
	pkgs := append(def.Packages(req.ImageType), c.extraPackages...)
	res, err := solver.Solve(ctx, depsolve.Request{Arch: debArch, Repos: req.Repos, Packages: pkgs})
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Version:   FormatVersion,
		Generator: "kib " + version.String(),
		Distro:    def.Name,
		Arch:      req.Arch,
		DebArch:   debArch,
		ImageType: req.ImageType,
		Seed:      def.Defaults.Seed,
	}
	if req.Seed != nil {
		m.Seed = *req.Seed
	}
	m.SourceDateEpoch = res.RepoDate.Unix()
	if req.SourceDateEpoch != nil {
		m.SourceDateEpoch = *req.SourceDateEpoch
	}
	for _, r := range req.Repos {
		m.Sources.Repositories = append(m.Sources.Repositories, r.Line())
	}
	names := make([]string, 0, len(res.Packages))
	debs := make([]string, 0, len(res.Packages))
	for _, p := range res.Packages {
		m.Sources.Debs = append(m.Sources.Debs, Deb(p))
		names = append(names, p.Name)
		debs = append(debs, p.SHA256)
	}
	var build string
	if br := def.BuildRoot; br != nil {
		bres, err := solver.Solve(ctx, depsolve.Request{Arch: debArch, Repos: req.Repos, Packages: br.Packages})
		if err != nil {
			return nil, fmt.Errorf("build root: %w", err)
		}
		unpack := stageopt.DebsUnpack{Alternatives: br.Alternatives}
		for _, p := range bres.Packages {
			m.Sources.BuildDebs = append(m.Sources.BuildDebs, Deb(p))
			unpack.Debs = append(unpack.Debs, p.SHA256)
		}
		build = "build"
		bp := Pipeline{Name: build, Kind: KindTree}
		if err := addStage(&bp, "debs-unpack", unpack); err != nil {
			return nil, err
		}
		m.Pipelines = append(m.Pipelines, bp)
	}
	// The package tree is a pipeline of its own, and the os tree starts
	// from a copy of it: an edit of the customizations, or an image type
	// with other kernel options, reuses the installed packages from the
	// store (see treePipelines).
	pkgTree, os, err := treePipelines(build, stageopt.Mmdebstrap{Suite: def.Codename, Packages: names, Debs: debs})
	if err != nil {
		return nil, err
	}
	m.Pipelines = append(m.Pipelines, pkgTree)
	add := addStage
	var fstab any
	if disk != nil {
		fstab = disk.Fstab()
	}
	steps := []struct {
		typ  string
		opts any
		when bool
	}{
		{"hostname", stageopt.Hostname{Hostname: c.hostname}, true},
		{"timezone", stageopt.Timezone{Zone: c.timezone, NTPServers: c.ntpServers}, true},
		{"locale", stageopt.Locale{Language: c.language, Keyboard: c.keyboard}, true},
		{"users", stageopt.Users{Groups: c.groups, Users: c.users}, len(c.users)+len(c.groups) > 0},
		{"files", stageopt.Files{Files: c.files}, len(c.files) > 0},
		{"services", stageopt.Services{Enabled: c.enabled, Disabled: c.disabled}, len(c.enabled)+len(c.disabled) > 0},
		{"fstab", fstab, disk != nil},
		{"debian-finalize", stageopt.DebianFinalize{Sources: imageSources(req.Repos, req.Keyrings), KernelCmdline: kernelCmdline(disk, c.cmdline)}, true},
	}
	for _, s := range steps {
		if s.when {
			if err := add(&os, s.typ, s.opts); err != nil {
				return nil, err
			}
		}
	}
	m.Pipelines = append(m.Pipelines, os)
	out := Pipeline{Name: it.Export, Kind: KindFile, Build: build}
	switch it.Recipe {
	case "tar":
		err = add(&out, "tar", stageopt.Tar{Source: "os", Filename: it.Filename, Compression: it.Compression.Format, Level: it.Compression.Level})
	case "container":
		ct := it.Container
		err = add(&out, "oci-archive", stageopt.OCIArchive{Source: "os", Filename: it.Filename, Ref: ct.Ref,
			Cmd: ct.Cmd, Entrypoint: ct.Entrypoint, Env: ct.Env, WorkingDir: ct.WorkingDir,
			Exclude: []string{"./dev/*"}})
	case "disk":
		err = diskPipelines(m, it, disk, build, add)
	default:
		err = fmt.Errorf("image type %s: recipe %q has no pipelines", req.ImageType, it.Recipe)
	}
	if err != nil {
		return nil, err
	}
	if it.Recipe != "disk" {
		m.Pipelines = append(m.Pipelines, out)
	}
	m.Exports = []Export{{Name: it.Export, Filename: it.Filename, BootMode: it.BootMode}}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("generated manifest: %w", err)
	}
	return m, nil
}

// addStage appends a stage of type typ with options opts, canonically
// encoded, to pl.
func addStage(pl *Pipeline, typ string, opts any) error {
	raw, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	canon, err := Canonicalize(raw)
	if err != nil {
		return err
	}
	pl.Stages = append(pl.Stages, Stage{Type: typ, Options: canon})
	return nil
}

// imageSources are the apt sources the image keeps: the request's
// repositories, minus file:// ones that only exist on the build host, with
// the image's copies of their keyrings.
func imageSources(repos []depsolve.Repo, keys []Keyring) []string {
	var out []string
	for _, r := range repos {
		if strings.HasPrefix(r.URL, "file:") {
			continue
		}
		for _, k := range keys {
			if r.SignedBy == k.HostPath {
				r.SignedBy = k.ImagePath
			}
		}
		out = append(out, r.Line())
	}
	return out
}

type custom struct {
	minSize                                         int64
	hostname, timezone, language, keyboard, cmdline string
	ntpServers                                      []string
	users                                           []stageopt.UserSpec
	groups                                          []stageopt.GroupSpec
	files                                           []stageopt.FileSpec
	enabled, disabled                               []string
	extraPackages                                   []string
}

// customizations merges the blueprint over the distro's defaults and adds the
// packages the customizations need.
func customizations(def *distro.Definition, bp *blueprint.Blueprint) custom {
	c := custom{hostname: def.Defaults.Hostname, timezone: def.Defaults.Timezone, language: def.Defaults.Locale}
	if bp == nil {
		return c
	}
	for _, p := range bp.Packages {
		if p.Version == "" || p.Version == "*" {
			c.extraPackages = append(c.extraPackages, p.Name)
		} else {
			c.extraPackages = append(c.extraPackages, p.Name+"="+p.Version)
		}
	}
	bc := bp.Customizations
	if bc == nil {
		return c
	}
	if bc.Hostname != nil {
		c.hostname = *bc.Hostname
	}
	if bc.Timezone != nil && bc.Timezone.Timezone != "" {
		c.timezone = bc.Timezone.Timezone
		if c.timezone != "UTC" && c.timezone != "Etc/UTC" {
			c.extraPackages = append(c.extraPackages, "tzdata")
		}
	}
	if bc.Timezone != nil && len(bc.Timezone.NTPServers) > 0 {
		c.ntpServers = bc.Timezone.NTPServers
		c.extraPackages = append(c.extraPackages, "systemd-timesyncd")
	}
	if bc.Locale != nil {
		if len(bc.Locale.Languages) > 0 {
			c.language = bc.Locale.Languages[0]
		}
		c.keyboard = bc.Locale.Keyboard
		if l := (stageopt.Locale{Language: c.language}); !l.Builtin() {
			c.extraPackages = append(c.extraPackages, "locales")
		}
	}
	for _, g := range bc.Group {
		c.groups = append(c.groups, stageopt.GroupSpec{Name: g.Name, GID: g.GID})
	}
	for _, u := range bc.User {
		c.users = append(c.users, stageopt.UserSpec{Name: u.Name, Description: u.Description, Password: u.Password,
			Keys: u.AllKeys(), Home: u.Home, Shell: u.Shell, Groups: u.Groups, UID: u.UID, GID: u.GID})
	}
	for _, f := range bc.Files {
		c.files = append(c.files, stageopt.FileSpec{Path: f.Path, Data: f.Data, Mode: fmt.Sprintf("%04o", f.FileMode()), User: f.User, Group: f.Group})
	}
	if bc.Services != nil {
		c.enabled, c.disabled = bc.Services.Enabled, bc.Services.Disabled
	}
	if bc.Kernel != nil {
		c.cmdline = bc.Kernel.Append
	}
	if bc.Disk != nil && bc.Disk.MinSize != "" {
		c.minSize, _ = blueprint.ParseSize(bc.Disk.MinSize) // validated by the blueprint parser
	}
	c.extraPackages = dedupe(c.extraPackages)
	return c
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// rawName is the raw disk file of the image pipeline, unless the raw disk is
// itself the export.
const rawName = "disk.raw"

// hybridDisk returns the disk layout of a disk image type: the size from the
// request, the blueprint or the definition (rounded up to 1 MiB), the kernel
// options from the definition and the blueprint.
func hybridDisk(it distro.ImageType, req Request, c custom) (*stageopt.HybridDisk, error) {
	size, err := blueprint.ParseSize(it.Size)
	if err != nil {
		return nil, fmt.Errorf("definition size: %w", err)
	}
	if c.minSize > 0 {
		size = c.minSize
	}
	if req.Size != nil {
		size = *req.Size
	}
	const mib = 1 << 20
	if size < 512*mib {
		return nil, fmt.Errorf("disk size: %d bytes is too small; a bootable disk image needs at least 512 MiB", size)
	}
	size = (size + mib - 1) / mib * mib
	seed := req.Distro.Defaults.Seed
	if req.Seed != nil {
		seed = *req.Seed
	}
	opts := strings.TrimSpace(it.KernelOptions + " " + c.cmdline)
	file := rawName
	if it.Disk.Format == "raw" {
		file = it.Filename
	}
	return &stageopt.HybridDisk{Filename: file, Size: uint64(size), Seed: seed, Source: "os", KernelOptions: opts}, nil
}

func kernelCmdline(disk *stageopt.HybridDisk, custom string) string {
	if disk == nil {
		return custom
	}
	return "root=UUID=" + disk.RootUUID() + " " + disk.KernelOptions
}

// diskPipelines adds the pipelines of a disk image: "image", the raw disk
// assembled from the os tree, then the conversion the format needs.
func diskPipelines(m *Manifest, it distro.ImageType, disk *stageopt.HybridDisk, build string, add func(*Pipeline, string, any) error) error {
	specs, err := disk.Plan()
	if err != nil {
		return fmt.Errorf("disk layout: %w", err)
	}
	img := Pipeline{Name: "image", Kind: KindFile, Build: build}
	for _, s := range specs {
		if err := add(&img, s.Type, s.Options); err != nil {
			return err
		}
	}
	m.Pipelines = append(m.Pipelines, img)
	if it.Disk.Format == "raw" {
		if it.Export != "image" {
			return fmt.Errorf("disk format raw: export must be %q, the raw disk's pipeline, not %q", "image", it.Export)
		}
		return nil
	}
	conv := Pipeline{Name: it.Export, Kind: KindFile, Build: build}
	switch it.Disk.Format {
	case "qcow2":
		err = add(&conv, "qemu-img", stageopt.QemuImg{Conversion: stageopt.Conversion{Input: "image", InputFilename: rawName, Filename: it.Filename}, Format: "qcow2"})
	case "vpc":
		err = add(&conv, "qemu-img", stageopt.QemuImg{Conversion: stageopt.Conversion{Input: "image", InputFilename: rawName, Filename: it.Filename}, Format: "vpc",
			UUID: stageopt.UUIDFromSeed(disk.Seed, "vhd")})
	case "xz":
		err = add(&conv, "xz", stageopt.XZ{Conversion: stageopt.Conversion{Input: "image", InputFilename: rawName, Filename: it.Filename}, Level: it.Disk.Level})
	case "gce":
		err = add(&conv, "gce-tar", stageopt.GCETar{Conversion: stageopt.Conversion{Input: "image", InputFilename: rawName, Filename: it.Filename}, Level: it.Disk.Level})
	default:
		err = fmt.Errorf("disk format %q has no pipeline", it.Disk.Format)
	}
	if err != nil {
		return err
	}
	m.Pipelines = append(m.Pipelines, conv)
	return nil
}
