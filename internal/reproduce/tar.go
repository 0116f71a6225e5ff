package reproduce

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/ulikunitz/xz"
)

// Decompress returns r decompressed when it starts with the magic of xz,
// gzip or bzip2, else r itself.
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return xz.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// CompareTar walks two (possibly compressed) tar archives side by side and
// returns their first differing entry: a different name at the same place,
// a header field, or the content (with the byte offset in the file). It
// returns nil when every entry is the same. Errors name the archive
// ("koji" for a, "reproduced" for b) that could not be read.
func CompareTar(a, b io.Reader) (*Difference, error) {
	da, err := Decompress(a)
	if err != nil {
		return nil, fmt.Errorf("koji image: %w", err)
	}
	db, err := Decompress(b)
	if err != nil {
		return nil, fmt.Errorf("reproduced image: %w", err)
	}
	ta, tb := tar.NewReader(da), tar.NewReader(db)
	for n := 1; ; n++ {
		ha, ea := ta.Next()
		hb, eb := tb.Next()
		if ea != nil && !errors.Is(ea, io.EOF) {
			return nil, fmt.Errorf("koji image: tar entry %d: %w", n, ea)
		}
		if eb != nil && !errors.Is(eb, io.EOF) {
			return nil, fmt.Errorf("reproduced image: tar entry %d: %w", n, eb)
		}
		switch {
		case ea != nil && eb != nil:
			return nil, nil
		case ea != nil:
			return &Difference{Entry: hb.Name, Detail: fmt.Sprintf("only in the reproduced image (entry %d; the Koji image has %d entries)", n, n-1)}, nil
		case eb != nil:
			return &Difference{Entry: ha.Name, Detail: fmt.Sprintf("only in the Koji image (entry %d; the reproduced image has %d entries)", n, n-1)}, nil
		}
		if ha.Name != hb.Name {
			return &Difference{Entry: ha.Name, Detail: fmt.Sprintf("entry %d: the reproduced image has %q here", n, hb.Name)}, nil
		}
		if d := headerDiff(ha, hb); d != "" {
			return &Difference{Entry: ha.Name, Detail: d}, nil
		}
		off, same, err := compareStreams(ta, tb)
		if err != nil {
			return nil, fmt.Errorf("tar entry %s: %w", ha.Name, err)
		}
		if !same {
			return &Difference{Entry: ha.Name, Offset: off, Detail: fmt.Sprintf("content differs from byte %d", off)}, nil
		}
	}
}

// headerDiff names the first header field that differs, with both values.
func headerDiff(a, b *tar.Header) string {
	type field struct {
		name string
		a, b any
	}
	fields := []field{
		{"type", string(a.Typeflag), string(b.Typeflag)},
		{"mode", fmt.Sprintf("%#o", a.Mode), fmt.Sprintf("%#o", b.Mode)},
		{"uid", a.Uid, b.Uid}, {"gid", a.Gid, b.Gid},
		{"user name", a.Uname, b.Uname}, {"group name", a.Gname, b.Gname},
		{"size", a.Size, b.Size},
		{"mtime", a.ModTime.UTC(), b.ModTime.UTC()},
		{"atime", a.AccessTime.UTC(), b.AccessTime.UTC()},
		{"ctime", a.ChangeTime.UTC(), b.ChangeTime.UTC()},
		{"link target", a.Linkname, b.Linkname},
		{"device major", a.Devmajor, b.Devmajor}, {"device minor", a.Devminor, b.Devminor},
	}
	for _, f := range fields {
		if f.a != f.b {
			return fmt.Sprintf("%s %v in Koji, %v reproduced", f.name, f.a, f.b)
		}
	}
	// PAX records carry extended attributes, ACLs and file capabilities.
	keys := slices.Sorted(maps.Keys(a.PAXRecords))
	for _, k := range slices.Sorted(maps.Keys(b.PAXRecords)) {
		if _, ok := a.PAXRecords[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "mtime") || strings.HasPrefix(k, "atime") || strings.HasPrefix(k, "ctime") {
			continue // compared above, at full precision
		}
		va, oka := a.PAXRecords[k]
		vb, okb := b.PAXRecords[k]
		if oka != okb || va != vb {
			return fmt.Sprintf("pax record %s %q in Koji, %q reproduced", k, va, vb)
		}
	}
	return ""
}

// compareStreams reads a and b to the end and returns the offset of the
// first differing byte (or the shorter length) and whether they are equal.
func compareStreams(a, b io.Reader) (int64, bool, error) {
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(a, bufA)
		nb, eb := io.ReadFull(b, bufB)
		if ea != nil && !errors.Is(ea, io.EOF) && !errors.Is(ea, io.ErrUnexpectedEOF) {
			return 0, false, fmt.Errorf("koji image: %w", ea)
		}
		if eb != nil && !errors.Is(eb, io.EOF) && !errors.Is(eb, io.ErrUnexpectedEOF) {
			return 0, false, fmt.Errorf("reproduced image: %w", eb)
		}
		n := min(na, nb)
		if i := firstDiff(bufA[:n], bufB[:n]); i >= 0 {
			return off + int64(i), false, nil
		}
		if na != nb {
			return off + int64(n), false, nil
		}
		off += int64(n)
		if na < len(bufA) {
			return off, true, nil
		}
	}
}

// firstDiff returns the index of the first differing byte of two slices
// of equal length, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	const step = 4096
	for i := 0; i < len(a); i += step {
		j := min(i+step, len(a))
		if !bytes.Equal(a[i:j], b[i:j]) {
			for k := i; k < j; k++ {
				if a[k] != b[k] {
					return k
				}
			}
		}
	}
	return -1
}

// ExtractMember copies the regular file name of a (possibly compressed)
// tar archive into dest.
func ExtractMember(r io.Reader, name, dest string) error {
	d, err := Decompress(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(d)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("tar: no entry %q", name)
		}
		if err != nil {
			return err
		}
		if h.Name != name || h.Typeflag != tar.TypeReg {
			continue
		}
		f, err := os.Create(dest)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
}
