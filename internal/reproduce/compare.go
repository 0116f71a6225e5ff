package reproduce

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Format is how an image file is compared.
type Format string

// The formats kib exports.
const (
	FormatTar   Format = "tar"   // tar, optionally xz/gzip/bzip2 compressed
	FormatRaw   Format = "raw"   // raw disk
	FormatRawXZ Format = "rawxz" // xz-compressed raw disk
	FormatQCOW2 Format = "qcow2"
	FormatVPC   Format = "vpc" // VHD
	FormatBytes Format = "bytes"
)

// FormatOf picks the format from an export file name.
func FormatOf(filename string) Format {
	switch {
	case strings.HasSuffix(filename, ".qcow2"):
		return FormatQCOW2
	case strings.HasSuffix(filename, ".vhd"):
		return FormatVPC
	case strings.HasSuffix(filename, ".raw.xz"):
		return FormatRawXZ
	case strings.HasSuffix(filename, ".raw"), strings.HasSuffix(filename, ".img"):
		return FormatRaw
	case strings.HasSuffix(filename, ".tar"), strings.HasSuffix(filename, ".tar.xz"), strings.HasSuffix(filename, ".tar.gz"),
		strings.HasSuffix(filename, ".tgz"), strings.HasSuffix(filename, ".tar.bz2"):
		return FormatTar
	}
	return FormatBytes
}

// Compare returns where the Koji image and the reproduced one (both of
// format f) first differ, or nil when their contents are the same. tmp
// receives raw disks converted from other formats.
func Compare(ctx context.Context, f Format, kojiPath, localPath, tmp string) (*Difference, error) {
	switch f {
	case FormatTar:
		d, err := compareFiles(kojiPath, localPath, CompareTar)
		if err != nil || d == nil || !isDiskMember(d) {
			return d, err
		}
		// A disk inside a tarball (GCE): compare the disks themselves.
		ka, la := filepath.Join(tmp, "koji-"+filepath.Base(d.Entry)), filepath.Join(tmp, "reproduced-"+filepath.Base(d.Entry))
		defer os.Remove(ka)
		defer os.Remove(la)
		for _, x := range [][2]string{{kojiPath, ka}, {localPath, la}} {
			if err := extractFile(x[0], d.Entry, x[1]); err != nil {
				return nil, err
			}
		}
		dd, err := CompareDisk(ctx, ka, la, tmp)
		if err != nil || dd == nil {
			return d, err
		}
		dd.Member = d.Entry
		return dd, nil
	case FormatBytes:
		return compareFiles(kojiPath, localPath, func(a, b io.Reader) (*Difference, error) {
			off, same, err := compareStreams(a, b)
			if err != nil || same {
				return nil, err
			}
			return &Difference{Offset: off, Detail: fmt.Sprintf("bytes differ from byte %d", off)}, nil
		})
	case FormatRaw:
		return CompareDisk(ctx, kojiPath, localPath, tmp)
	}
	ka, la := filepath.Join(tmp, "koji.raw"), filepath.Join(tmp, "reproduced.raw")
	defer os.Remove(ka)
	defer os.Remove(la)
	for _, x := range [][2]string{{kojiPath, ka}, {localPath, la}} {
		if err := toRaw(ctx, f, x[0], x[1]); err != nil {
			return nil, err
		}
	}
	return CompareDisk(ctx, ka, la, tmp)
}

func isDiskMember(d *Difference) bool {
	return strings.HasPrefix(d.Detail, "content differs") && FormatOf(d.Entry) == FormatRaw
}

func compareFiles(a, b string, cmp func(a, b io.Reader) (*Difference, error)) (*Difference, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return cmp(fa, fb)
}

func extractFile(archive, name, dest string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ExtractMember(f, name, dest); err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	return nil
}

// toRaw converts a disk image of format f into the raw disk dest: xz in
// process, qcow2 and VHD with qemu-img (sparse output).
func toRaw(ctx context.Context, f Format, src, dest string) error {
	if f == FormatRawXZ {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		r, err := Decompress(in)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		out, err := os.Create(dest)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, r)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("decompressing %s: %w", src, err)
		}
		return nil
	}
	if _, err := hostcmd.Run(ctx, hostcmd.Cmd{Path: "qemu-img", Args: []string{"convert", "-f", string(f), "-O", "raw", src, dest}}); err != nil {
		return fmt.Errorf("converting %s to raw: %w", src, err)
	}
	return nil
}
