package stages

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A grown tree keeps the smaller tree's initramfs when no added file is an
// input of the initramfs build; otherwise the initramfs is built anew, as
// before. The inputs are those of initramfs-tools (mkinitramfs, its
// hook-functions and every hook, script and configuration file it runs):
//
//   - everything under the paths in initramfsInputDirs: configuration
//     (all of /etc), the kernels and /boot, initramfs-tools' own files and
//     hooks, modules, firmware, modprobe.d, udev and systemd's udevd, klibc,
//     dracut, console fonts and keymaps;
//   - shared libraries (a name with ".so"), and any file directly in a
//     library directory (/lib, /usr/lib, their multiarch and 64-bit
//     directories): copy_exec copies the libraries ldd finds;
//   - a file directly in a directory of PATH (/bin, /sbin, /usr/bin,
//     /usr/sbin, /usr/local/bin, /usr/local/sbin) whose name the tree's
//     initramfs scripts name: a word of theirs, or a word with a variable
//     in it taken as a pattern ("fsck.${type}" is fsck.*), since hooks copy
//     what `command -v` or `[ -x ]` finds;
//   - elsewhere, a path those scripts name, a file directly in a directory
//     they name, or anything under a directory they index by a variable
//     ("/usr/share/plymouth/themes/${theme}" covers the themes), since
//     hooks list directories and copy what they find there.
//
// The added packages themselves run nothing (the grow gate), so no file of
// the smaller tree changes. A tree whose initramfs is not initramfs-tools'
// (no hook-functions), or one that lacks an initramfs for a kernel, gets
// its initramfs built anew. checkGrownDisk (engine) builds the grown and
// the clean image and compares their bits.

// initramfsInputDirs are the trees whose every file is an input of the
// initramfs build, in both their /lib and /usr/lib forms.
var initramfsInputDirs = []string{
	"/etc", "/boot",
	"/usr/share/initramfs-tools", "/usr/lib/initramfs-tools", "/usr/lib/dracut",
	"/lib/modules", "/lib/firmware", "/lib/modprobe.d", "/lib/udev", "/lib/systemd", "/lib/klibc",
	"/usr/lib/modules", "/usr/lib/firmware", "/usr/lib/modprobe.d", "/usr/lib/udev", "/usr/lib/systemd", "/usr/lib/klibc",
	"/usr/share/keymaps", "/usr/share/consolefonts", "/usr/share/console-setup", "/usr/share/X11/xkb",
}

// pathDirs are the directories of PATH a hook finds commands in.
var pathDirs = map[string]bool{
	"/bin": true, "/sbin": true, "/usr/bin": true, "/usr/sbin": true,
	"/usr/local/bin": true, "/usr/local/sbin": true,
}

// initramfsScripts are the files outside initramfs-tools' directories whose
// words name commands the build looks for.
var initramfsScripts = []string{"/usr/sbin/mkinitramfs", "/usr/sbin/update-initramfs", "/usr/sbin/lsinitramfs"}

// initramfsScriptDirs are the directories of initramfs-tools' scripts,
// hooks and configuration.
var initramfsScriptDirs = []string{"/usr/share/initramfs-tools", "/etc/initramfs-tools"}

// maxScriptSize is the largest script read for words; a larger one makes
// the initramfs be built anew.
const maxScriptSize = 4 << 20

// initramfsInputs is what decides whether an added file can change the
// initramfs of a tree.
type initramfsInputs struct {
	names []string // patterns of the command names the scripts mention
	paths []string // patterns of the absolute paths they mention
}

// readInitramfsInputs reads the command names and paths the initramfs
// scripts of tree mention. It returns why the initramfs must be built anew
// whatever the added files, or "".
func readInitramfsInputs(tree string) (*initramfsInputs, string, error) {
	if fi, err := os.Lstat(filepath.Join(tree, hookFunctionsPath)); err != nil || !fi.Mode().IsRegular() {
		return nil, "the tree has no initramfs-tools hook-functions", nil
	}
	in := &initramfsInputs{}
	add := func(data []byte) {
		names, paths := scriptWords(string(data))
		in.names = append(in.names, names...)
		in.paths = append(in.paths, paths...)
	}
	add([]byte(hookFunctionsOverride))
	read := func(p string, fi fs.FileInfo) (string, error) {
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Sprintf("%s is a symbolic link", strings.TrimPrefix(p, tree)), nil
		}
		if !fi.Mode().IsRegular() {
			return "", nil
		}
		if fi.Size() > maxScriptSize {
			return fmt.Sprintf("%s is larger than %d bytes", strings.TrimPrefix(p, tree), maxScriptSize), nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		add(data)
		return "", nil
	}
	for _, s := range initramfsScripts {
		p := filepath.Join(tree, s)
		fi, err := os.Lstat(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if why, err := read(p, fi); why != "" || err != nil {
			return nil, why, err
		}
	}
	for _, d := range initramfsScriptDirs {
		why := ""
		err := filepath.WalkDir(filepath.Join(tree, d), func(p string, e fs.DirEntry, err error) error {
			if os.IsNotExist(err) {
				return nil
			}
			if err != nil || e.IsDir() {
				return err
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			why, err = read(p, fi)
			if why != "" {
				return filepath.SkipAll
			}
			return err
		})
		if why != "" || err != nil {
			return nil, why, err
		}
	}
	slices.Sort(in.names)
	in.names = slices.Compact(in.names)
	slices.Sort(in.paths)
	in.paths = slices.Compact(in.paths)
	return in, "", nil
}

// variable matches a shell parameter expansion in a word.
var variable = regexp.MustCompile(`\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*|\$[0-9@*#?$!-]`)

// scriptWords returns the patterns of the names and the absolute paths a
// shell script mentions: of each word outside comment lines, variables
// replaced by "*" and brackets kept literal (they are case patterns and
// tests of a value), each part between colons that starts with "/" is a
// path, and each component of each part a name. Components that are all
// variable are left out of the names: they name nothing.
func scriptWords(script string) (names, paths []string) {
	for line := range strings.SplitSeq(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, w := range strings.FieldsFunc(line, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.+-@%:/${}*?[]!~,", r))
		}) {
			w = strings.NewReplacer("[", `\[`, "]", `\]`).Replace(w)
			w = variable.ReplaceAllString(w, "*")
			for part := range strings.SplitSeq(w, ":") {
				if strings.HasPrefix(part, "/") {
					paths = append(paths, path.Clean(part))
				}
				for c := range strings.SplitSeq(part, "/") {
					if strings.Trim(c, "*?.{}") == "" {
						continue
					}
					names = append(names, c)
				}
			}
		}
	}
	return names, paths
}

// changedBy returns the first added path that is an input of the initramfs
// build and why, or "".
func (in *initramfsInputs) changedBy(paths []string) string {
	for _, p := range paths {
		if why := in.input(p); why != "" {
			return p + " " + why
		}
	}
	return ""
}

// input returns why the path p (absolute, clean) is an input of the
// initramfs build, or "".
func (in *initramfsInputs) input(p string) string {
	for _, d := range initramfsInputDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "is under " + d
		}
	}
	dir, name := path.Split(p)
	dir = path.Clean(dir)
	if strings.HasSuffix(name, ".so") || strings.Contains(name, ".so.") {
		return "is a shared library"
	}
	if libDir(dir) {
		return "is in the library directory " + dir
	}
	if pathDirs[dir] {
		for _, pat := range in.names {
			if ok, _ := path.Match(pat, name); ok {
				return fmt.Sprintf("is a command the initramfs scripts name (%q)", pat)
			}
		}
		return ""
	}
	for _, pat := range in.paths {
		if scriptPathCovers(pat, p) {
			return fmt.Sprintf("is a path the initramfs scripts name (%q)", pat)
		}
	}
	return ""
}

// scriptPathCovers reports whether the path pattern pat of a script can
// stand for p or for a directory the script lists p in: p itself; a file
// directly in the directory pat; or, when a component of pat is a
// variable, anything under the directory before it ("/lib/udev/*" covers
// all of /lib/udev), or, when the component is only partly variable,
// whatever matches it ("/sbin/fsck.*" covers /sbin/fsck.vfat). A directory
// of PATH or of libraries as pat covers nothing (input has their own
// rules), nor does a variable in the first component ("/usr${src}" makes
// a path from another, "/lib*" is a case pattern).
func scriptPathCovers(pat, p string) bool {
	comps := strings.Split(strings.TrimPrefix(pat, "/"), "/")
	i := slices.IndexFunc(comps, func(c string) bool { return strings.ContainsAny(c, "*?") })
	if i < 0 {
		if pathDirs[pat] || libDir(pat) || pat == "/" {
			return p == pat
		}
		return p == pat || path.Dir(p) == pat
	}
	dir := "/" + strings.Join(comps[:i], "/")
	if i == 0 {
		// "/usr${src}", "/lib*)": a value's prefix changed or a case
		// pattern over paths, not a place the script lists.
		return false
	}
	if strings.Trim(comps[i], "*") == "" {
		if dir == "/" {
			return false // "/*": a path held in a variable, which names no place
		}
		return strings.HasPrefix(p, dir+"/")
	}
	pc := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(pc) <= i {
		return false
	}
	ok, _ := path.Match(path.Join(dir, comps[i]), "/"+strings.Join(pc[:i+1], "/"))
	return ok
}

// libDir reports whether dir is a directory the dynamic linker searches:
// /lib, /usr/lib, /usr/local/lib, their 32- and 64-bit forms and the
// multiarch directories in them.
func libDir(dir string) bool {
	for _, base := range []string{"/lib", "/usr/lib", "/usr/local/lib"} {
		switch rest, ok := strings.CutPrefix(dir, base); {
		case !ok:
		case rest == "" || rest == "32" || rest == "64" || rest == "x32":
			return true
		case strings.HasPrefix(rest, "/") && !strings.Contains(rest[1:], "/") && strings.Contains(rest, "-linux-"):
			return true
		}
	}
	return false
}

// keptInitramfs reports whether every kernel of tree has its initramfs
// (a regular /boot/initrd.img-VERSION), or says which has not.
func keptInitramfs(tree string) (string, error) {
	mods, err := filepath.Glob(filepath.Join(tree, "lib/modules/*"))
	if err != nil {
		return "", err
	}
	for _, m := range mods {
		v := filepath.Base(m)
		if _, err := os.Lstat(filepath.Join(tree, "boot", "vmlinuz-"+v)); err != nil {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(tree, "boot", "initrd.img-"+v)); err != nil || !fi.Mode().IsRegular() {
			return "the smaller tree has no initramfs for kernel " + v, nil
		}
	}
	return "", nil
}

// initramfsRebuild returns why the initramfs of the smaller tree base,
// grown by the files added, must be built anew, or "" when the grown tree
// keeps it. KIB_GROW_INITRAMFS=rebuild always builds it anew.
func initramfsRebuild(base string, added []string) (string, error) {
	if os.Getenv("KIB_GROW_INITRAMFS") == "rebuild" {
		return "KIB_GROW_INITRAMFS=rebuild", nil
	}
	why, err := keptInitramfs(base)
	if why != "" || err != nil {
		return why, err
	}
	in, why, err := readInitramfsInputs(base)
	if why != "" || err != nil {
		return why, err
	}
	return in.changedBy(added), nil
}
