package stages

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/debindex"
	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Mmdebstrap is the mmdebstrap stage; its options are stageopt.Mmdebstrap.
type Mmdebstrap stageopt.Mmdebstrap

func init() {
	register("mmdebstrap", func(o *stageopt.Mmdebstrap) Stage { return (*Mmdebstrap)(o) })
}

// Run builds the local repository and runs mmdebstrap into env.Tree.
func (m *Mmdebstrap) Run(ctx context.Context, env *Env) error {
	if err := env.check(m.Tools()...); err != nil {
		return err
	}
	switch base, extra, why, err := m.growBase(env); {
	case err != nil:
		return err
	case base == "":
		env.Log.Debug("package tree built clean", "stage", "mmdebstrap", "why", why)
	default:
		why, err := m.grow(ctx, env, base, extra)
		if err != nil {
			return fmt.Errorf("mmdebstrap: growing the tree of a smaller package set: %w", err)
		}
		if why == "" {
			return m.record(env)
		}
		env.Log.Info("package tree built clean", "stage", "mmdebstrap", "why", why)
	}
	repo := filepath.Join(env.Work, "repo")
	pool := filepath.Join(repo, "pool")
	if err := os.MkdirAll(pool, 0o755); err != nil {
		return err
	}
	for _, d := range m.Debs {
		if _, ok := env.Sources[d]; !ok {
			return fmt.Errorf("deb %s is not among the fetched sources", d)
		}
	}
	// The pool holds the packages with data.tar uncompressed (see
	// deb_uncompressed.go), made on both cores the first time.
	started := time.Now()
	debs, err := uncompressedDebs(ctx, env, m.Debs, runtime.NumCPU())
	if err != nil {
		return err
	}
	env.Log.Info("phase done", "stage", "mmdebstrap", "phase", "uncompressed-debs", "duration", time.Since(started).Round(time.Millisecond))
	real := filepath.Join(env.Work, "real")
	idx, err := m.fillPool(ctx, env, debs, repo, real)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(repo, "Packages"), idx, 0o644); err != nil {
		return err
	}
	rel, err := env.exec(ctx, hostcmd.Cmd{Path: "apt-ftparchive", Dir: repo, Log: env.ToolLog, Args: []string{
		"-o", "APT::FTPArchive::Release::Suite=" + m.Suite,
		"-o", "APT::FTPArchive::Release::Codename=" + m.Suite,
		"-o", "APT::FTPArchive::Release::Origin=kib",
		"-o", "APT::FTPArchive::Release::Label=kib",
		"-o", "APT::FTPArchive::Release::Architectures=" + env.Arch,
		"release", "."}})
	if err != nil {
		return fmt.Errorf("writing the local repository's Release file: %w", err)
	}
	if err := os.WriteFile(filepath.Join(repo, "Release"), rel, 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(env.Work, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	// The local repository is seen at one fixed path, repoMount, both by
	// apt outside the tree and by dpkg inside it: a tmpfs over /run in a
	// private mount namespace holds the mount point, so nothing of the
	// store's path reaches the image, and mmdebstrap's cleanup of /run
	// removes the mount point from the tree.
	helpers := filepath.Join(env.Work, "build")
	if err := prepareBuildDir(helpers); err != nil {
		return err
	}
	marks := filepath.Join(env.Work, "phases")
	// The helper directory (see initramfs.go) comes first in PATH: in the
	// tree, for dpkg's maintainer scripts and mkinitramfs; outside it, on
	// this fresh /run, it does not exist.
	//
	// With the tree in memory (memtree.go), a tmpfs of the namespace's own
	// is mounted on mem, mmdebstrap installs into mem/tree, and cp -a
	// copies the finished tree into env.Tree, keeping every owner, mode,
	// time, extended attribute and hard link.
	target, mem := env.Tree, ""
	limit, estimate := memTreeSize(idx, memAvailable())
	if limit > 0 {
		mem = filepath.Join(env.Work, "mem")
		if err := os.Mkdir(mem, 0o755); err != nil {
			return err
		}
		target = filepath.Join(mem, "tree")
	}
	env.Log.Info("package tree", "stage", "mmdebstrap", "in_memory", mem != "", "estimate_mib", estimate>>20, "tmpfs_limit_mib", limit>>20)
	script := `mount -t tmpfs -o mode=0755 kib /run && mkdir ` + repoMount + ` && mount -o ro,bind "$0" ` + repoMount +
		` && PATH=` + buildDir + `:$PATH && export PATH && mem=$1 tree=$2 && shift 2 && ` +
		`if [ -z "$mem" ]; then exec "$@"; fi && ` +
		fmt.Sprintf(`echo "kib: the package tree in memory, tmpfs of at most %d MiB" >&2 && `, limit>>20) +
		fmt.Sprintf(`mount -t tmpfs -o mode=0755,size=%dk kib-tree "$mem"`, limit>>10) +
		` && "$@" && ` + phaseHook(marks, "cleanup") + ` && cp -a "$mem/tree/." "$tree/" && ` + phaseHook(marks, "copy")
	args := []string{"--mount", "--propagation", "private", "sh", "-c", script, repo, mem, env.Tree,
		"mmdebstrap",
		"--mode=root", "--format=directory", "--variant=custom",
		"--architectures=" + env.Arch,
		"--include=" + strings.Join(m.Packages, ","),
		// Build-time settings live in the tree only while mmdebstrap runs
		// (--aptopt and --dpkgopt would stay in the image): no translation
		// indexes, and no fsync of every unpacked file, since the tree is
		// thrown away if the build stops and the artifact is written later.
		"--setup-hook=" + buildConfigHook,
		"--setup-hook=" + mountRepoHook,
		"--setup-hook=" + fmt.Sprintf(mountBuildDirHook, helpers),
		"--setup-hook=" + phaseHook(marks, "setup"),
		"--extract-hook=" + phaseHook(marks, "extract"),
		"--extract-hook=" + fmt.Sprintf(realDebsHook, real, pool),
		"--customize-hook=" + phaseHook(marks, "install"),
		"--customize-hook=" + initramfsHook,
		"--customize-hook=" + phaseHook(marks, "initramfs"),
		"--customize-hook=" + unmountRepoHook,
		"--customize-hook=rm -f \"$1" + aptBuildConf + "\" \"$1" + dpkgBuildConf + "\"",
		"--customize-hook=" + unmountBuildDirHook,
		m.Suite, target, "deb [trusted=yes] file://" + repoMount + " ./",
	}
	// Run in a private mount namespace: mounts mmdebstrap leaves behind when
	// it fails or is killed vanish with the process.
	start := time.Now()
	_, err = env.exec(ctx, hostcmd.Cmd{Path: "unshare", Args: args, Log: env.ToolLog, Env: dpkgEnv(env, tmp)})
	if err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	done := time.Now()
	if _, err := compressInitramfs(ctx, env.Tree, helpers); err != nil {
		return fmt.Errorf("compressing the initramfs: %w", err)
	}
	if err := settleTree(env.Tree, env.SourceDateEpoch); err != nil {
		return err
	}
	logPhases(env.Log, "mmdebstrap", start, done, readMarks(marks, false),
		readMarks(filepath.Join(helpers, "dpkg-status"), true), time.Since(done))
	return m.record(env)
}

// dpkgEnv returns the environment dpkg, its maintainer scripts and
// mkinitramfs run with, with TMPDIR tmp. LC_ALL=C rather than BaseEnv's
// C.UTF-8: still the same on every host, and dpkg and the maintainer
// scripts ran 15-20 % slower in C.UTF-8 here (bench/tar.sh).
// KIB_INITRAMFS_FAST=off passes on (initramfs-tools' own hook-functions,
// for comparisons; the image is the same either way).
func dpkgEnv(env *Env, tmp string) []string {
	e := append(env.BaseEnv(), "LC_ALL=C", "TMPDIR="+tmp)
	if os.Getenv("KIB_INITRAMFS_FAST") == "off" {
		e = append(e, "KIB_INITRAMFS_FAST=off")
	}
	return e
}

// realDebsHook links the real packages over their stubs in the pool, once
// mmdebstrap has extracted what it extracts; it does nothing when there
// are no stubs.
const realDebsHook = `[ ! -d "%[1]s" ] || cp -al --remove-destination "%[1]s/." "%[2]s/"`

// fillPool links the packages debs into the pool of the local repository
// repo and returns its Packages index. With stubs (see deb_stub.go), the
// pool first holds every package's stub, whose index tells which packages
// the extraction needs whole; those get their real package in the pool,
// the others theirs in real, from where the extract hook links them into
// the pool. Stubs need the uncompressed packages and the store; they are
// off without either, or with KIB_STUB_EXTRACT=off.
//
// The index carries SHA256 only: apt checks nothing else, and MD5, SHA1
// and SHA512 of 660 MB of uncompressed packages took seconds.
func (m *Mmdebstrap) fillPool(ctx context.Context, env *Env, debs map[string]string, repo, real string) ([]byte, error) {
	pool := filepath.Join(repo, "pool")
	index := func() ([]byte, error) {
		idx, err := env.exec(ctx, hostcmd.Cmd{Path: "apt-ftparchive", Dir: repo, Log: env.ToolLog, Args: []string{
			"-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false", "-o", "APT::FTPArchive::SHA512=false",
			"packages", "pool"}})
		if err != nil {
			return nil, fmt.Errorf("indexing the local repository: %w", err)
		}
		return idx, nil
	}
	link := func(dir, sum, src string) error {
		dst := filepath.Join(dir, sum+".deb")
		if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
			return err
		}
		return linkOrCopy(src, dst)
	}
	if env.Cache == nil || os.Getenv("KIB_STUB_EXTRACT") == "off" || os.Getenv("KIB_UNCOMPRESSED_DEBS") == "off" {
		for _, d := range m.Debs {
			if err := link(pool, d, debs[d]); err != nil {
				return nil, err
			}
		}
		return index()
	}
	for _, d := range m.Debs {
		stub, err := stubDeb(ctx, env, d, debs[d])
		if err != nil {
			return nil, err
		}
		if err := link(pool, d, stub); err != nil {
			return nil, err
		}
	}
	idx, err := index()
	if err != nil {
		return nil, err
	}
	pkgs, err := debindex.ParsePackages(bytes.NewReader(idx))
	if err != nil {
		return nil, fmt.Errorf("reading the local repository's index: %w", err)
	}
	need := extractSet(pkgs)
	if err := os.MkdirAll(real, 0o755); err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		sum := strings.TrimSuffix(filepath.Base(p.Filename), ".deb")
		src, ok := debs[sum]
		if !ok || p.Filename != "pool/"+sum+".deb" {
			return nil, fmt.Errorf("local repository: %s is no package of the manifest", p.Filename)
		}
		dir := real
		if need[p.Name] {
			dir = pool
		}
		if err := link(dir, sum, src); err != nil {
			return nil, err
		}
	}
	env.Log.Info("extraction stubs", "stage", "mmdebstrap", "whole", len(need), "stubs", len(pkgs)-len(need))
	return index()
}

// The apt and dpkg settings of the build, removed from the tree at the end.
const (
	aptBuildConf  = "/etc/apt/apt.conf.d/00kib-build"
	dpkgBuildConf = "/etc/dpkg/dpkg.cfg.d/00kib-build"
)

// repoMount is where the local repository is mounted, outside the tree and
// inside it, while mmdebstrap runs.
const repoMount = "/run/kib-repo"

// mountRepoHook and unmountRepoHook make the local repository visible inside
// the tree (dpkg installs the .debs from their apt paths) and take it away
// again, leaving no directory behind.
const (
	mountRepoHook   = `mkdir -p "$1` + repoMount + `" && mount -o ro,bind ` + repoMount + ` "$1` + repoMount + `"`
	unmountRepoHook = `umount "$1` + repoMount + `" && rmdir "$1` + repoMount + `"`
)

// buildConfigHook is mmdebstrap's setup hook that writes them.
var buildConfigHook = strings.Join([]string{
	`mkdir -p "$1/etc/apt/apt.conf.d" "$1/etc/dpkg/dpkg.cfg.d"`,
	`echo 'Acquire::Languages "none";' > "$1` + aptBuildConf + `"`,
	`echo force-unsafe-io > "$1` + dpkgBuildConf + `"`,
	`echo 'status-logger ` + buildDir + `/status-logger' >> "$1` + dpkgBuildConf + `"`,
}, " && ")

// linkOrCopy hard-links src to dst, copying when they are on different file
// systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Tools lists the host tools the stage runs.
func (m *Mmdebstrap) Tools() []string {
	return []string{"mmdebstrap", "apt-ftparchive", "unshare", "sh", "dpkg-deb"}
}
