package stages

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// The initramfs is built once, after every package is installed, instead of
// twice while dpkg runs (by the kernel's postinst hook, then again by the
// initramfs-tools trigger), and compressed by kib on both cores.
//
// While mmdebstrap runs, a directory of the stage's work tree is mounted at
// buildDir in the tree, and PATH inside the tree starts with it. It holds:
//   - update-initramfs, a no-op, which the kernel's hook and the trigger
//     find first: nothing is built while packages are installed;
//   - zstd, which mkinitramfs runs as its compressor (Debian 12's
//     initramfs.conf says COMPRESS=zstd, and the image has no zstd of its
//     own; bound over /usr/bin/zstd while update-initramfs runs, since
//     mkinitramfs sets its own PATH): it hands the uncompressed cpio
//     archive to kib and writes a marker in its place;
//   - hook-functions.kib (initramfs_hooks.sh), faster definitions of two
//     functions of initramfs-tools' hook-functions, with the same results:
//     while the initramfs is built, the tree's hook-functions followed by
//     them is bound over the original, when its sha256 is
//     initramfsHookFunctionsSHA256 (see initramfsHook);
//   - status-logger, which dpkg runs (status-logger in the build-time
//     dpkg.cfg.d file) to log its steps with times, for the phase timings.
//
// A customize hook then runs the real update-initramfs -c for each installed
// kernel, as the kernel's hook would have, and after mmdebstrap kib
// replaces each marker by the zstd-compressed archive. The directory is
// unmounted and removed from the tree; nothing of this stays in the image.

// buildDir is where the stage's helper directory is seen inside the tree.
const buildDir = "/run/kib-build"

// cpioMarker starts the line the zstd stand-in writes instead of the
// compressed archive; the archive's file name in buildDir/cpio follows.
const cpioMarker = "KIB-INITRAMFS-CPIO:"

// initramfsZstdLevel is the compression level of the initramfs: zstd's
// default level, which compresses the 125 MiB archive of a generic kernel in
// well under a second on two cores.
const initramfsZstdLevel = zstd.SpeedDefault

// initramfsZstdConcurrency is fixed, not the machine's core count, so that
// every machine writes the same bytes.
const initramfsZstdConcurrency = 2

// hookFunctionsOverride is appended to initramfs-tools' hook-functions while
// the initramfs is built: copy_file and manual_add_modules with the same
// results and a tenth of the processes.
//
//go:embed initramfs_hooks.sh
var hookFunctionsOverride string

// initramfsHookFunctionsSHA256 is the sha256 of the hook-functions of
// initramfs-tools 0.142+deb12u3 (Debian 12), the only one whose copy_file
// and manual_add_modules the override was proven against (TestHookFunctions
// and the images of TestDiskImage). Any other hook-functions is used as it
// is, only slower.
const initramfsHookFunctionsSHA256 = "05ec37b6ab74e1205027bc1d8bcb429ab18d9f3e06ea66bdf552083c5fa516af"

// hookFunctionsPath is where initramfs-tools keeps hook-functions.
const hookFunctionsPath = "/usr/share/initramfs-tools/hook-functions"

var buildDirFiles = map[string]string{
	"hook-functions.kib": hookFunctionsOverride,
	"update-initramfs": `#!/bin/sh
# kib: the initramfs is built once, after all packages are installed.
exit 0
`,
	"zstd": `#!/bin/sh
# kib: stands in for zstd as mkinitramfs's compressor; kib compresses the
# archive after mmdebstrap and puts it where the marker is.
for f; do :; done
n=${f##*/}
cp -- "$f" ` + buildDir + `/cpio/"$n" && printf '` + cpioMarker + `%s\n' "$n"
`,
	"status-logger": `#!/bin/sh
# kib: dpkg's steps with their times, for the phase timings.
if [ -x /usr/bin/perl ] && /usr/bin/perl -MTime::HiRes -e 1 2>/dev/null; then
	exec /usr/bin/perl -MTime::HiRes=time -ne 'BEGIN { $| = 1 } printf "%.3f %s", time, $_' >> ` + buildDir + `/dpkg-status
fi
exec cat > /dev/null
`,
}

// prepareBuildDir writes the helper directory's files into dir.
func prepareBuildDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "cpio"), 0o755); err != nil {
		return err
	}
	for name, body := range buildDirFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Hooks of mmdebstrap around the helper directory.
const (
	mountBuildDirHook   = `mkdir -p "$1` + buildDir + `" && mount --bind "%s" "$1` + buildDir + `"`
	unmountBuildDirHook = `umount "$1` + buildDir + `" && rmdir "$1` + buildDir + `"`
	// initramfsHook builds the initramfs of each installed kernel, with
	// the command the kernel's postinst hook runs, when the tree has
	// initramfs-tools; a tree without a kernel gets none.
	//
	// mkinitramfs sets its own PATH (/usr/bin:/sbin:/bin), so the zstd
	// stand-in is bound over /usr/bin/zstd while it runs, when the image
	// has no zstd of its own; the empty mount point is removed after. The
	// faster hook-functions is bound over the tree's while it runs, when
	// the tree's is the one kib knows, unless KIB_INITRAMFS_FAST=off.
	initramfsHook = `[ -x "$1/usr/sbin/update-initramfs" ] || exit 0; ` +
		`z=; if [ ! -e "$1/usr/bin/zstd" ] && [ ! -L "$1/usr/bin/zstd" ]; then z="$1/usr/bin/zstd"; ` +
		`: > "$z" && mount --bind "$1` + buildDir + `/zstd" "$z" || exit 1; fi; ` +
		`h=; if [ "${KIB_INITRAMFS_FAST-}" != off ] && [ -f "$1` + hookFunctionsPath + `" ] && [ ! -L "$1` + hookFunctionsPath + `" ] && ` +
		`[ "$(sha256sum < "$1` + hookFunctionsPath + `")" = "` + initramfsHookFunctionsSHA256 + `  -" ]; then h="$1` + hookFunctionsPath + `"; ` +
		`cat "$h" "$1` + buildDir + `/hook-functions.kib" > "$1` + buildDir + `/hook-functions" && ` +
		`mount --bind "$1` + buildDir + `/hook-functions" "$h" || exit 1; echo "kib: $h with kib's copy_file" >&2; fi; ` +
		`for m in "$1"/lib/modules/*; do v=${m##*/}; [ -e "$1/boot/vmlinuz-$v" ] || continue; ` +
		`chroot "$1" /usr/sbin/update-initramfs -c -k "$v" -b /boot >&2 || exit 1; done; ` +
		`if [ -n "$h" ]; then umount "$h" || exit 1; fi; ` +
		`if [ -n "$z" ]; then umount "$z" && rm -f "$z" || exit 1; fi`
)

// phaseHook appends the phase name and the time to the phases file.
func phaseHook(file, name string) string {
	return fmt.Sprintf(`echo %s $(date +%%s.%%N) >> "%s"`, name, file)
}

// compressInitramfs replaces each marker the zstd stand-in left in the
// tree's initramfs images by the zstd-compressed archive it names. Every
// archive must be claimed by exactly one image.
func compressInitramfs(ctx context.Context, tree, dir string) (int, error) {
	cpios, err := os.ReadDir(filepath.Join(dir, "cpio"))
	if err != nil || len(cpios) == 0 {
		return 0, err
	}
	left := map[string]bool{}
	for _, c := range cpios {
		left[c.Name()] = true
	}
	images, err := filepath.Glob(filepath.Join(tree, "boot", "initrd.img-*"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, img := range images {
		fi, err := os.Lstat(img)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 64<<20 {
			continue // not one of ours: a marker is a few bytes plus any early cpio
		}
		data, err := os.ReadFile(img)
		if err != nil {
			return n, err
		}
		i := bytes.Index(data, []byte(cpioMarker))
		if i < 0 {
			continue
		}
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			return n, fmt.Errorf("%s: unterminated initramfs marker", img)
		}
		name := string(data[i+len(cpioMarker) : i+end])
		if !left[name] || strings.Contains(name, "/") {
			return n, fmt.Errorf("%s: marker names %q, which no mkinitramfs run left", img, name)
		}
		delete(left, name)
		if err := writeInitramfs(ctx, img, fi, data[:i], filepath.Join(dir, "cpio", name), data[i+end+1:]); err != nil {
			return n, fmt.Errorf("%s: %w", img, err)
		}
		n++
	}
	if len(left) > 0 {
		return n, fmt.Errorf("initramfs: %d archive(s) built but found in no /boot/initrd.img-*", len(left))
	}
	return n, nil
}

// writeInitramfs writes prefix, the compressed archive and suffix over img,
// keeping its mode and modification time.
func writeInitramfs(ctx context.Context, img string, fi os.FileInfo, prefix []byte, archive string, suffix []byte) error {
	in, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := img + ".kib-new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = func() error {
		if _, err := out.Write(prefix); err != nil {
			return err
		}
		if err := zstdCompress(ctx, out, in); err != nil {
			return err
		}
		_, err := out.Write(suffix)
		return err
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, fi.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, img)
}

// zstdCompress writes r to w as one zstd frame, with the fixed level and
// concurrency that make the output the same on every machine.
func zstdCompress(ctx context.Context, w io.Writer, r io.Reader) error {
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(initramfsZstdLevel),
		zstd.WithEncoderConcurrency(initramfsZstdConcurrency))
	if err != nil {
		return err
	}
	if _, err := io.Copy(enc, ctxReader{ctx, r}); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
