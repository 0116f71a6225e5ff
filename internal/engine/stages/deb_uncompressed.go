package stages

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/kib-project/kib/internal/hostcmd"
)

// A Debian package stores its files as data.tar compressed with xz, which
// the build decompresses twice: mmdebstrap extracts every package before
// installing, then dpkg unpacks each again. Decompressing was a fifth of
// the packages pipeline's CPU time. So the pool mmdebstrap installs from
// holds each package with its data.tar uncompressed, made once and kept in
// the store: the same ar members in the same order, debian-binary and
// control.tar.* byte for byte, and data.tar the very stream dpkg-deb
// decompresses from the original. dpkg unpacks the same files either way;
// the package's sha256 is not recorded anywhere in the image (mmdebstrap
// removes apt's lists and cache), and TestDiskImage builds a second store
// from the original packages and requires the same image.

// uncompressedDebFormat is part of the store key of every uncompressed
// package: change it when the bytes written change.
const uncompressedDebFormat = "kib uncompressed deb 1"

// uncompressedDebs returns, for each of the sources srcs (sha256 digest to
// path), the path of the package with its data.tar uncompressed, made in
// env.Cache by workers at once when the store lacks it. Without a cache, or
// with KIB_UNCOMPRESSED_DEBS=off, it returns srcs.
func uncompressedDebs(ctx context.Context, env *Env, sums []string, workers int) (map[string]string, error) {
	out := make(map[string]string, len(sums))
	if env.Cache == nil || os.Getenv("KIB_UNCOMPRESSED_DEBS") == "off" {
		for _, s := range sums {
			out[s] = env.Sources[s]
		}
		return out, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan string)
	)
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				p, err := uncompressedDeb(ctx, env, s, env.Sources[s])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("deb %s: %w", s, err)
					cancel()
				}
				out[s] = p
				mu.Unlock()
			}
		}()
	}
feed:
	for _, s := range sums {
		select {
		case next <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return out, firstErr
}

// uncompressedDeb returns the path of src, the package with digest sum, with
// its data.tar uncompressed: src itself when it already is.
func uncompressedDeb(ctx context.Context, env *Env, sum, src string) (string, error) {
	members, err := readArMembers(src)
	if err != nil {
		return "", err
	}
	data := members[len(members)-1]
	if data.name == "data.tar" {
		return src, nil
	}
	key := sha256.Sum256([]byte(uncompressedDebFormat + "\n" + sum))
	dir, err := env.Cache(ctx, hex.EncodeToString(key[:]), func(ctx context.Context, dir string) error {
		return writeUncompressedDeb(ctx, env, src, members, filepath.Join(dir, "deb"))
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "deb"), nil
}

// arMember is a member of an ar archive: its 60-byte header, name, and the
// offset and size of its data in the file.
type arMember struct {
	header [60]byte
	name   string
	offset int64
	size   int64
}

const arMagic = "!<arch>\n"

// readArMembers reads the member headers of the Debian package at path and
// checks its layout: debian-binary, control.tar[.*], data.tar[.*], and
// nothing after data.tar.
func readArMembers(path string) ([]arMember, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var magic [len(arMagic)]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != arMagic {
		return nil, fmt.Errorf("%s: not an ar archive", path)
	}
	var members []arMember
	off := int64(len(arMagic))
	for off < fi.Size() {
		var m arMember
		if _, err := f.ReadAt(m.header[:], off); err != nil {
			return nil, fmt.Errorf("%s: member header at %d: %w", path, off, err)
		}
		if string(m.header[58:60]) != "`\n" {
			return nil, fmt.Errorf("%s: member header at %d: bad end marker", path, off)
		}
		m.name = strings.TrimSuffix(strings.TrimRight(string(m.header[0:16]), " "), "/")
		size, err := strconv.ParseInt(strings.TrimRight(string(m.header[48:58]), " "), 10, 64)
		if err != nil || size < 0 || off+60+size > fi.Size() {
			return nil, fmt.Errorf("%s: member %q: bad size %q", path, m.name, m.header[48:58])
		}
		m.offset, m.size = off+60, size
		members = append(members, m)
		off += 60 + size + size%2
	}
	switch {
	case len(members) != 3 || members[0].name != "debian-binary":
		return nil, fmt.Errorf("%s: not a Debian package of three members (debian-binary, control.tar, data.tar)", path)
	case !strings.HasPrefix(members[1].name, "control.tar"):
		return nil, fmt.Errorf("%s: second member is %q, not control.tar", path, members[1].name)
	case !strings.HasPrefix(members[2].name, "data.tar"):
		return nil, fmt.Errorf("%s: third member is %q, not data.tar", path, members[2].name)
	}
	return members, nil
}

// writeDebHead writes the ar magic and the package's first two members,
// debian-binary and control.tar.*, from in as they are.
func writeDebHead(w io.Writer, in io.ReaderAt, members []arMember) error {
	if _, err := io.WriteString(w, arMagic); err != nil {
		return err
	}
	for _, m := range members[:2] {
		if _, err := w.Write(m.header[:]); err != nil {
			return err
		}
		if _, err := io.Copy(w, io.NewSectionReader(in, m.offset, m.size)); err != nil {
			return err
		}
		if err := arPad(w, m.size); err != nil {
			return err
		}
	}
	return nil
}

// arPad writes the byte that aligns a member of size bytes to two.
func arPad(w io.Writer, size int64) error {
	if size%2 == 0 {
		return nil
	}
	_, err := w.Write([]byte{'\n'})
	return err
}

// dataHeader returns the header of member m with name and size in place of
// its own.
func dataHeader(m arMember, name string, size int64) ([60]byte, error) {
	h := m.header
	sz := fmt.Sprintf("%-10d", size)
	if len(sz) != 10 || len(name) > 16 {
		return h, fmt.Errorf("member %s of %d bytes does not fit an ar header", name, size)
	}
	copy(h[0:16], fmt.Sprintf("%-16s", name))
	copy(h[48:58], sz)
	return h, nil
}

// writeUncompressedDeb writes src, whose members are members, to dst with
// data.tar decompressed by dpkg-deb --fsys-tarfile.
func writeUncompressedDeb(ctx context.Context, env *Env, src string, members []arMember, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	err = func() error {
		w := bufio.NewWriterSize(out, 1<<20)
		if err := writeDebHead(w, in, members); err != nil {
			return err
		}
		hdr, _ := dataHeader(members[2], "data.tar", 0) // the size is set below
		w.Write(hdr[:])
		if err := w.Flush(); err != nil {
			return err
		}
		start, err := out.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		// The package on standard input (in, read only through ReadAt so
		// far, is at offset 0): in a build root, src may be
		// outside the directories bound into it (kib reproduce links the
		// sources of another store).
		if _, err := env.exec(ctx, hostcmd.Cmd{Path: "dpkg-deb", Args: []string{"--fsys-tarfile", "-"},
			Stdin: in, Stdout: w, Log: env.ToolLog}); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		end, err := out.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if err := arPad(out, end-start); err != nil {
			return err
		}
		if hdr, err = dataHeader(members[2], "data.tar", end-start); err != nil {
			return err
		}
		_, err = out.WriteAt(hdr[:], start-60)
		return err
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(fmt.Errorf("uncompressing %s: %w", filepath.Base(src), err), os.Remove(dst))
	}
	return nil
}
