package stages

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kib-project/kib/internal/stageopt"
)

// DebsUnpack is the debs-unpack stage; its options are stageopt.DebsUnpack.
type DebsUnpack stageopt.DebsUnpack

func init() {
	register("debs-unpack", func(o *stageopt.DebsUnpack) Stage { return (*DebsUnpack)(o) })
}

// mergedUsr are the top-level directories that are links into /usr (the
// layout mmdebstrap and debootstrap make for Debian 12).
var mergedUsr = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// Run unpacks every deb into env.Tree.
func (o *DebsUnpack) Run(ctx context.Context, env *Env) error {
	for _, d := range mergedUsr {
		if err := os.MkdirAll(filepath.Join(env.Tree, "usr", d), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join("usr", d), filepath.Join(env.Tree, d)); err != nil {
			return err
		}
	}
	for _, d := range []string{"etc", "var/lib/dpkg", "tmp", "run", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(env.Tree, d), 0o755); err != nil {
			return err
		}
	}
	root, err := os.OpenRoot(env.Tree)
	if err != nil {
		return err
	}
	defer root.Close()
	srcs := make([]string, len(o.Debs))
	for i, d := range o.Debs {
		src, ok := env.Sources[d]
		if !ok {
			return fmt.Errorf("deb %s is not among the fetched sources", d)
		}
		srcs[i] = src
	}
	// Decompression (xz, in Go) is the slow part: the debs are decoded in
	// parallel, a few ahead, and written in their order.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan decodedDeb, len(srcs))
	for i := range results {
		results[i] = make(chan decodedDeb, 1)
	}
	sem := make(chan struct{}, runtime.GOMAXPROCS(0)+1)
	go func() {
		for i, src := range srcs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				c, d, err := decodeDeb(src)
				results[i] <- decodedDeb{c, d, err}
			}()
		}
	}()
	var status bytes.Buffer
	w := &treeWriter{root: root, dirs: map[string]bool{}}
	for i, ch := range results {
		var r decodedDeb
		select {
		case r = <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := r.err
		if err == nil {
			err = w.unpack(bytes.NewReader(r.data))
		}
		<-sem
		if err != nil {
			return fmt.Errorf("unpacking %s: %w", o.Debs[i], err)
		}
		// dpkg's status database, so that dpkg -l tells what is there.
		status.WriteString(statusStanza(r.control))
	}
	if err := os.WriteFile(filepath.Join(env.Tree, "var/lib/dpkg/status"), status.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(env.Tree, "var/lib/dpkg/arch"), []byte(env.Arch+"\n"), 0o644); err != nil {
		return err
	}
	for _, a := range o.Alternatives {
		link, target, _ := strings.Cut(a, "=")
		p := debPath(link)
		if _, err := root.Lstat(p); err == nil {
			continue // shipped by a package
		}
		if err := root.MkdirAll(path.Dir(p), 0o755); err != nil {
			return err
		}
		if err := root.Symlink(target, p); err != nil {
			return err
		}
	}
	return nil
}

// statusStanza turns a control file into a dpkg status entry.
func statusStanza(control []byte) string {
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimRight(string(control), "\n"), "\n") {
		b.WriteString(line)
		b.WriteByte('\n')
		if i == 0 {
			b.WriteString("Status: install ok unpacked\n")
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// debPath maps a path from a package to where it lands: /bin/x goes to
// /usr/bin/x, as through merged /usr's links.
func debPath(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	first, rest, _ := strings.Cut(name, "/")
	for _, d := range mergedUsr {
		if first == d {
			return path.Join("usr", d, rest)
		}
	}
	return name
}

// decodedDeb is a .deb read into memory: its control file and its data
// member's uncompressed tar stream.
type decodedDeb struct {
	control, data []byte
	err           error
}

// decodeDeb reads the ar archive at src.
func decodeDeb(src string) ([]byte, []byte, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, nil, errors.New("not an ar archive")
	}
	var control, data []byte
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(r, hdr); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("ar header: %w", err)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, nil, fmt.Errorf("ar member %q: bad size", name)
		}
		body := io.LimitReader(r, size)
		switch {
		case strings.HasPrefix(name, "control.tar"):
			control, err = readControl(name, body)
		case strings.HasPrefix(name, "data.tar"):
			data, err = readAll(name, body, sizeHint(control))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, nil, err
		}
		if size%2 == 1 {
			if _, err := r.Discard(1); err != nil && err != io.EOF {
				return nil, nil, err
			}
		}
	}
	if data == nil || control == nil {
		return nil, nil, errors.New("no data.tar or control.tar member")
	}
	return control, data, nil
}

// readAll returns the uncompressed content of the member name, in a buffer
// of hint bytes to start with: grown by doubling instead, the buffers of
// the few packages decoded at once (libperl's data.tar is 27 MB) held up to
// twice their size in garbage, and kib's peak RSS neared issue 13's 200 MiB.
func readAll(name string, r io.Reader, hint int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(hint)
	if path.Ext(name) == ".xz" {
		if xzPath := hostXZ(); xzPath != "" {
			err := xzDecode(xzPath, r, &buf)
			return buf.Bytes(), err
		}
	}
	d, done, err := decompress(name, r)
	if err != nil {
		return nil, err
	}
	defer done()
	_, err = buf.ReadFrom(d)
	return buf.Bytes(), err
}

// sizeHint returns a size the data.tar of the package with control file
// control should fit in: its Installed-Size and an eighth more for the tar
// headers, at most 1 GiB and an eighth; 0 when control has none.
func sizeHint(control []byte) int {
	return int(min(installedSize(control), 1<<30) * 9 / 8)
}

// hostXZ returns the path of the host's xz, or "" when it has none. Go's
// xz decoder takes twice the CPU time of liblzma's, and decoding is most of
// the build root's unpack; decompression is exact (xz checks every block's
// CRC, and the .deb's sha256 was verified), so the tree is the same with
// either decoder, and a host without xz uses Go's.
var hostXZ = sync.OnceValue(func() string {
	p, err := exec.LookPath("xz")
	if err != nil {
		return ""
	}
	return p
})

// xzDecode decompresses r with the xz at xzPath into out.
func xzDecode(xzPath string, r io.Reader, out *bytes.Buffer) error {
	var stderr bytes.Buffer
	cmd := exec.Command(xzPath, "--decompress", "--stdout", "--single-stream")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xz: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// decompress returns a reader of the member name's tar stream.
func decompress(name string, r io.Reader) (io.Reader, func(), error) {
	switch path.Ext(name) {
	case ".tar":
		return r, func() {}, nil
	case ".xz":
		x, err := xz.NewReader(r)
		return x, func() {}, err
	case ".zst":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	case ".gz":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return g, func() { g.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown compression of %s", name)
}

func readControl(name string, r io.Reader) ([]byte, error) {
	d, done, err := decompress(name, r)
	if err != nil {
		return nil, err
	}
	defer done()
	tr := tar.NewReader(d)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("no control file: %w", err)
		}
		if path.Clean(h.Name) == "control" {
			return io.ReadAll(io.LimitReader(tr, 1<<20))
		}
	}
}

// unpackTar writes the tar member into root. os.Root keeps every write
// inside the tree, whatever links the packages ship.
func unpackTar(r io.Reader, root *os.Root) error {
	return (&treeWriter{root: root, dirs: map[string]bool{}}).unpack(r)
}

// treeWriter writes tar members into a tree, remembering the directories it
// has made: os.Root's MkdirAll walks the path component by component, which
// was a third of the unpack's system calls when done for every file.
type treeWriter struct {
	root *os.Root
	dirs map[string]bool
}

// mkdirAll makes dir and its parents once.
func (w *treeWriter) mkdirAll(dir string) error {
	if dir == "." || w.dirs[dir] {
		return nil
	}
	if err := w.root.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d := dir; d != "." && !w.dirs[d]; d = path.Dir(d) {
		w.dirs[d] = true
	}
	return nil
}

// replace runs create, and when the path exists (a later package replacing
// an earlier one's file, as dpkg does), removes it and runs create again.
func (w *treeWriter) replace(rel string, create func() error) error {
	err := create()
	if !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := w.root.Remove(rel); err != nil {
		return err
	}
	delete(w.dirs, rel)
	return create()
}

func (w *treeWriter) unpack(r io.Reader) error {
	root := w.root
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := debPath(h.Name)
		if rel == "" || rel == "." {
			continue
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		if h.Typeflag != tar.TypeDir {
			if err := w.mkdirAll(path.Dir(rel)); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := w.mkdirAll(rel); err != nil {
				return err
			}
			if err := root.Chmod(rel, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			var f *os.File
			err := w.replace(rel, func() (err error) {
				f, err = root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
				return err
			})
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := w.replace(rel, func() error { return root.Symlink(h.Linkname, rel) }); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := w.replace(rel, func() error { return root.Link(debPath(h.Linkname), rel) }); err != nil {
				return err
			}
		default:
			// Device nodes and FIFOs: a build root needs none (the sandbox
			// binds the host's /dev).
		}
	}
}
