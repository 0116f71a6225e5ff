package stages

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/version"
)

// A package set that grows by a few packages starts from the store's tree of
// the smaller set, when installing the new packages on it provably gives
// the tree a clean build gives. Each package tree records its package set
// in the store (growRecordName); a build that misses the cache looks there
// for a tree of the same family (everything but the package set the same:
// kib, suite, build root, architecture, seed, SOURCE_DATE_EPOCH) whose debs
// are a subset of its own, at most maxGrow fewer. It grows that tree only
// when every new package is one dpkg installs the same way in any order and
// on any tree that has the others:
//
//   - its control.tar holds only control and md5sums: no maintainer scripts,
//     triggers, conffiles or debconf templates, so nothing runs and nothing
//     else in the tree changes;
//   - its control declares no Essential, Conflicts, Breaks, Replaces or
//     Provides, so apt and dpkg treat no other package differently;
//   - the tree has never heard of it (no Package: stanza in dpkg's status);
//   - none of its files exists in the tree, none is diverted or has a stat
//     override, and none is under a path an installed package has a file
//     trigger on (man-db's /usr/share/man, say); every directory it shares
//     with the tree has the tree's owner and mode there, and no shared path
//     goes through a symbolic link.
//
// dpkg of the tree then installs them, with the same settings as in the
// clean build, and the initramfs is built anew from the grown tree the way
// the clean build's last step builds it, so whatever a new package adds
// that the initramfs hooks look for is found. settleTree then leaves the
// grown tree what the clean build's is, bit for bit; TestBuildReproducible
// and TestDiskImage build both and compare. KIB_GROW=off builds every
// package set clean.

// growRecordName is the store record of a package tree's set.
const growRecordName = "mmdebstrap-packages"

// maxGrow is the most packages a tree grows by; more is a new image.
const maxGrow = 8

// growRecord is what a package tree records of itself.
type growRecord struct {
	Family   string   `json:"family"`
	Debs     []string `json:"debs"`
	Packages []string `json:"packages"`
}

// family returns the hash of everything the package tree depends on but
// its package set.
func (m *Mmdebstrap) family(env *Env) string {
	raw, _ := json.Marshal(struct {
		Kib, Suite, Arch, BuildRoot string
		Revision                    int
		SDE, Seed                   int64
		InitramfsFast               bool
	}{version.String(), m.Suite, env.Arch, env.BuildRoot, Revision, env.SourceDateEpoch, env.Seed, os.Getenv("KIB_INITRAMFS_FAST") != "off"})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// record keeps the tree's package set in the store.
func (m *Mmdebstrap) record(env *Env) error {
	if env.Record == nil {
		return nil
	}
	data, err := json.Marshal(growRecord{Family: m.family(env), Debs: slices.Sorted(slices.Values(m.Debs)), Packages: slices.Sorted(slices.Values(m.Packages))})
	if err != nil {
		return err
	}
	return env.Record(growRecordName, data)
}

// growBase returns the tree of the store to grow from and the debs to add,
// or "" and why there is none.
func (m *Mmdebstrap) growBase(env *Env) (tree string, extra []string, why string, err error) {
	if os.Getenv("KIB_GROW") == "off" {
		return "", nil, "KIB_GROW=off", nil
	}
	if env.Records == nil {
		return "", nil, "no store", nil
	}
	recs, err := env.Records(growRecordName)
	if err != nil {
		return "", nil, "", err
	}
	family := m.family(env)
	debs := map[string]bool{}
	for _, d := range m.Debs {
		debs[d] = true
	}
	pkgs := map[string]bool{}
	for _, p := range m.Packages {
		pkgs[p] = true
	}
	best := -1
	for _, r := range recs {
		var rec growRecord
		if json.Unmarshal(r.Data, &rec) != nil || rec.Family != family || len(rec.Debs) >= len(debs) || len(debs)-len(rec.Debs) > maxGrow {
			continue
		}
		if !allIn(rec.Debs, debs) || !allIn(rec.Packages, pkgs) {
			continue
		}
		if len(rec.Debs) > best {
			have := map[string]bool{}
			for _, d := range rec.Debs {
				have[d] = true
			}
			extra = extra[:0]
			for _, d := range m.Debs {
				if !have[d] {
					extra = append(extra, d)
				}
			}
			tree, best = r.Tree, len(rec.Debs)
		}
	}
	if tree == "" {
		return "", nil, "no tree of a smaller package set in the store", nil
	}
	return tree, extra, "", nil
}

func allIn(xs []string, set map[string]bool) bool {
	for _, x := range xs {
		if !set[x] {
			return false
		}
	}
	return true
}

// treeFacts is what the gate reads of the tree to grow.
type treeFacts struct {
	tree      string
	installed map[string]bool // packages dpkg's status names
	triggers  []string        // paths of file triggers
	diverted  map[string]bool
	overrides map[string]bool
}

func readTreeFacts(tree string) (*treeFacts, error) {
	f := &treeFacts{tree: tree, installed: map[string]bool{}, diverted: map[string]bool{}, overrides: map[string]bool{}}
	status, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return nil, fmt.Errorf("the tree to grow: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if name, ok := strings.CutPrefix(line, "Package:"); ok {
			f.installed[strings.TrimSpace(name)] = true
		}
	}
	lines := func(p string) ([]string, error) {
		data, err := os.ReadFile(filepath.Join(tree, p))
		if os.IsNotExist(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("the tree to grow: %w", err)
		}
		return strings.Split(strings.TrimRight(string(data), "\n"), "\n"), nil
	}
	trig, err := lines("var/lib/dpkg/triggers/File")
	if err != nil {
		return nil, err
	}
	for _, l := range trig {
		if p, _, ok := strings.Cut(l, " "); ok && p != "" {
			f.triggers = append(f.triggers, strings.TrimRight(p, "/"))
		}
	}
	div, err := lines("var/lib/dpkg/diversions")
	if err != nil {
		return nil, err
	}
	for i, l := range div {
		if i%3 == 0 && l != "" {
			f.diverted[l] = true
		}
	}
	ovr, err := lines("var/lib/dpkg/statoverride")
	if err != nil {
		return nil, err
	}
	for _, l := range ovr {
		if fs := strings.Fields(l); len(fs) == 4 {
			f.overrides[fs[3]] = true
		}
	}
	return f, nil
}

// growBlocker returns why the package at deb cannot be installed on the
// tree the way a clean build would have it, or "" and the paths of the
// package's files and directories that the tree does not have.
func (f *treeFacts) growBlocker(deb string) (why string, added []string, err error) {
	members, err := readArMembers(deb)
	if err != nil {
		return "", nil, err
	}
	file, err := os.Open(deb)
	if err != nil {
		return "", nil, err
	}
	defer file.Close()
	member := func(m arMember) (*tar.Reader, func(), error) {
		r, done, err := decompress(m.name, bufio.NewReaderSize(io.NewSectionReader(file, m.offset, m.size), 1<<16))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		return tar.NewReader(r), done, nil
	}
	ctl, done, err := member(members[1])
	if err != nil {
		return "", nil, err
	}
	var control []byte
	for {
		h, err := ctl.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			done()
			return "", nil, fmt.Errorf("control.tar: %w", err)
		}
		switch name := path.Clean(h.Name); name {
		case ".":
		case "control":
			if control, err = io.ReadAll(io.LimitReader(ctl, 1<<20)); err != nil {
				done()
				return "", nil, err
			}
		case "md5sums":
		default:
			done()
			return fmt.Sprintf("it has a control file %s (maintainer scripts, triggers, conffiles and templates run or change things)", name), nil, nil
		}
	}
	done()
	name := ""
	for line := range strings.SplitSeq(string(control), "\n") {
		field, value, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(field) {
		case "package":
			name = value
		case "essential":
			if value == "yes" {
				return "it is Essential", nil, nil
			}
		case "conflicts", "breaks", "replaces", "provides":
			return fmt.Sprintf("its control file declares %s", field), nil, nil
		}
	}
	if name == "" {
		return "", nil, fmt.Errorf("control file: no Package field")
	}
	if f.installed[name] {
		return fmt.Sprintf("dpkg's status of the tree already names %s", name), nil, nil
	}
	data, done, err := member(members[2])
	if err != nil {
		return "", nil, err
	}
	defer done()
	for {
		h, err := data.Next()
		if err == io.EOF {
			return "", added, nil
		}
		if err != nil {
			return "", nil, fmt.Errorf("data.tar: %w", err)
		}
		p := path.Clean("/" + h.Name)
		if p == "/" {
			continue
		}
		if f.diverted[p] || f.overrides[p] {
			return fmt.Sprintf("%s is diverted or has a stat override in the tree", p), nil, nil
		}
		for _, t := range f.triggers {
			if p == t || strings.HasPrefix(p, t+"/") {
				return fmt.Sprintf("%s is under %s, which an installed package has a file trigger on", p, t), nil, nil
			}
		}
		var st syscall.Stat_t
		err = syscall.Lstat(filepath.Join(f.tree, p), &st)
		if os.IsNotExist(err) || err == syscall.ENOENT {
			added = append(added, p)
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if h.Typeflag != tar.TypeDir || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return fmt.Sprintf("%s is in the tree already", p), nil, nil
		}
		if int64(st.Mode&0o7777) != h.Mode&0o7777 || int(st.Uid) != h.Uid || int(st.Gid) != h.Gid {
			return fmt.Sprintf("directory %s has another owner or mode in the tree", p), nil, nil
		}
	}
}

// growScript installs the packages given as arguments (paths outside the
// tree) into the tree $1 with its own dpkg, as the clean build's dpkg
// runs (unsafe io, SOURCE_DATE_EPOCH, LC_ALL=C), logging to a scratch
// file: mmdebstrap removes dpkg's log from a reproducible tree. Then, when
// $4 is "rebuild", it builds the initramfs anew with the clean build's
// hook; else the tree keeps the smaller tree's (grow_initramfs.go). /proc, /sys,
// /tmp, /var/tmp (mkinitramfs's scratch tree, thousands of files, built in
// memory as in the clean build) and the helper directory are mounted in a
// private namespace; the tree keeps none of them.
var growScript = `set -e
t=$1 b=$2 k=$3 r=$4; shift 4
mount -t proc proc "$t/proc"
mount -t sysfs sysfs "$t/sys"
mount -t tmpfs -o mode=1777 kib-grow "$t/tmp"
mkdir "$t/tmp/debs"
i=0; for d in "$@"; do i=$((i+1)); cp "$d" "$t/tmp/debs/$i.deb"; done
PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$t" sh -c 'dpkg --force-unsafe-io --log=/tmp/dpkg.log --install /tmp/debs/*.deb' >&2
umount "$t/tmp"
echo dpkg $(date +%s.%N) >> "$k"
if [ "$r" = rebuild ]; then
set -- "$t"
` + fmt.Sprintf(mountBuildDirHook, "$b") + `
PATH=` + buildDir + `:$PATH; export PATH
for m in "$t"/lib/modules/*; do v=${m##*/}; [ ! -e "$t/boot/vmlinuz-$v" ] || [ ! -x "$t/usr/sbin/update-initramfs" ] || rm -f "$t/boot/initrd.img-$v"; done
mount -t tmpfs -o mode=1777 kib-grow "$t/var/tmp"
(` + initramfsHook + `)
umount "$t/var/tmp"
echo initramfs $(date +%s.%N) >> "$k"
` + unmountBuildDirHook + `
fi
umount "$t/sys" "$t/proc"
`

// grow installs the debs extra into a link of the tree base, in env.Tree.
// It returns why it did not, having left env.Tree as it was, when a package
// does not pass the gate.
func (m *Mmdebstrap) grow(ctx context.Context, env *Env, base string, extra []string) (why string, err error) {
	facts, err := readTreeFacts(base)
	if err != nil {
		return "", err
	}
	debs, err := uncompressedDebs(ctx, env, extra, 2)
	if err != nil {
		return "", err
	}
	var paths, added []string
	for _, d := range extra {
		src, ok := env.Sources[d]
		if !ok {
			return "", fmt.Errorf("deb %s is not among the fetched sources", d)
		}
		if p, ok := debs[d]; ok {
			src = p
		}
		why, files, err := facts.growBlocker(src)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", d, err)
		}
		if why != "" {
			return fmt.Sprintf("package %s: %s", d[:12], why), nil
		}
		paths = append(paths, src)
		added = append(added, files...)
	}
	rebuild, err := initramfsRebuild(base, added)
	if err != nil {
		return "", err
	}
	if rebuild != "" {
		env.Log.Info("grow: building the initramfs anew", "stage", "mmdebstrap", "why", rebuild)
	} else {
		env.Log.Info("grow: keeping the smaller tree's initramfs", "stage", "mmdebstrap", "why", "no added file is an input of the initramfs build")
	}
	start := time.Now()
	undo, reason, err := linkTreeUndo(env, base)
	if err != nil {
		return "", err
	}
	if reason != "" {
		env.Log.Info("grow: copying the smaller tree", "stage", "mmdebstrap", "why", reason)
		if _, err := CopyTree(ctx, base, env.Tree, 0); err != nil {
			return "", err
		}
	}
	linked := time.Now()
	if err := growInstall(ctx, env, paths, rebuild != ""); err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		// A clean build is the answer, not an error: take the tree back.
		if undo != nil {
			err = errors.Join(err, undo())
		} else {
			err = errors.Join(err, emptyDir(env.Tree))
		}
		return fmt.Sprintf("installing on the smaller tree failed: %v", err), nil
	}
	env.Log.Info("grown from a smaller package set", "stage", "mmdebstrap", "added", len(extra),
		"link", linked.Sub(start).Round(time.Millisecond), "install", time.Since(linked).Round(time.Millisecond))
	return "", nil
}

// growInstall installs the packages at paths into env.Tree, builds its
// initramfs anew when rebuild is set, and settles it.
func growInstall(ctx context.Context, env *Env, paths []string, rebuild bool) error {
	helpers := filepath.Join(env.Work, "build")
	if err := prepareBuildDir(helpers); err != nil {
		return err
	}
	tmp := filepath.Join(env.Work, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	marks := filepath.Join(env.Work, "grow-phases")
	mode := "keep"
	if rebuild {
		mode = "rebuild"
	}
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", growScript, "grow", env.Tree, helpers, marks, mode}, paths...)
	start := time.Now()
	if _, err := env.exec(ctx, hostcmd.Cmd{Path: "unshare", Args: args, Log: env.ToolLog, Env: dpkgEnv(env, tmp)}); err != nil {
		return fmt.Errorf("installing the added packages: %w", err)
	}
	ran := time.Now()
	if _, err := compressInitramfs(ctx, env.Tree, helpers); err != nil {
		return fmt.Errorf("compressing the initramfs: %w", err)
	}
	compressed := time.Now()
	if err := settleTree(env.Tree, env.SourceDateEpoch); err != nil {
		return err
	}
	prev := start
	for _, m := range readMarks(marks, false) {
		env.Log.Info("phase done", "stage", "mmdebstrap", "phase", "grow-"+m.what, "duration", m.at.Sub(prev).Round(time.Millisecond))
		prev = m.at
	}
	env.Log.Info("phase done", "stage", "mmdebstrap", "phase", "grow-compress", "duration", compressed.Sub(ran).Round(time.Millisecond))
	env.Log.Info("phase done", "stage", "mmdebstrap", "phase", "grow-settle", "duration", time.Since(compressed).Round(time.Millisecond))
	return nil
}

// emptyDir removes everything in dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// settleTree makes the package tree independent of the order its packages
// were unpacked in, which no manifest states: every directory's time is
// SOURCE_DATE_EPOCH and no time is later (a directory's time is that of the
// last package that extracted it, or of the last file dpkg renamed into
// it), and dpkg's backup of its status, the status before the last package
// was configured, is gone (debian-finalize removes it from every image
// anyway). A tree grown from a smaller set is then the clean build's.
func settleTree(tree string, sde int64) error {
	if err := os.Remove(filepath.Join(tree, "var/lib/dpkg/status-old")); err != nil && !os.IsNotExist(err) {
		return err
	}
	ts := []unix.Timespec{{Sec: sde}, {Sec: sde}}
	return filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Unchanged entries are not touched: in an overlay, a new time
		// would copy a directory up.
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if d.IsDir() && st.Mtim.Sec == sde && st.Mtim.Nsec == 0 || !d.IsDir() && st.Mtim.Sec < sde {
			return nil
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting the time of %s: %w", p, err)
		}
		return nil
	})
}
