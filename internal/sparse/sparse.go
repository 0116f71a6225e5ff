// Package sparse reads and copies files that are mostly holes, such as disk
// images, by their data regions (SEEK_DATA and SEEK_HOLE), keeping the holes.
package sparse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Extent is the half-open byte range [Start, End) of a file.
type Extent struct{ Start, End int64 }

// Data lists the data regions of the first size bytes of f, in order. On a
// file system without SEEK_DATA all of f is data; past f's end nothing is.
func Data(f *os.File, size int64) ([]Extent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size = min(size, st.Size())
	fd := int(f.Fd())
	var out []Extent
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return append(out, Extent{off, size}), nil
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA on %s: %w", f.Name(), err)
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE on %s: %w", f.Name(), err)
		}
		end = min(end, size)
		out = append(out, Extent{start, end})
		off = end
	}
	return out, nil
}

// CopyRange copies the n bytes at off in src to the same offset of dst, in
// the kernel when it can (copy_file_range), else through a buffer.
func CopyRange(dst, src *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		w, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				_, err := io.Copy(io.NewOffsetWriter(dst, woff), io.NewSectionReader(src, roff, n))
				return err
			}
			return err
		}
		if w == 0 {
			return fmt.Errorf("%s: file shrank while copying", src.Name())
		}
		n -= int64(w)
	}
	return nil
}

// zeros stands for a hole's bytes when they are hashed.
var zeros = make([]byte, 1<<20)

// Copy copies the first size bytes of src to the same offsets of dst, data
// regions only, so that src's holes (and whatever lies past its end) are
// holes in dst, and truncates dst to size. When h is not nil every byte goes
// to h in order, holes as zeros. The copy runs in the kernel where it can
// (copy_file_range) while another goroutine reads src again to hash it, so
// a copy and its hash take as long as the longer of the two, not their sum:
// hashing 4 GiB of a mostly empty disk image takes seconds, copying its data
// a fraction of one.
func Copy(ctx context.Context, dst, src *os.File, size int64, h io.Writer) error {
	ext, err := Data(src, size)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hashed := make(chan error, 1)
	if h != nil {
		go func() {
			err := hash(ctx, h, src, size, ext)
			if err != nil {
				cancel()
			}
			hashed <- err
		}()
	} else {
		hashed <- nil
	}
	err = copyData(ctx, dst, src, ext)
	if err != nil {
		cancel()
	}
	if herr := <-hashed; err == nil {
		err = herr
	}
	if err != nil {
		return err
	}
	return dst.Truncate(size)
}

func copyData(ctx context.Context, dst, src *os.File, ext []Extent) error {
	for _, e := range ext {
		for off := e.Start; off < e.End; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(e.End-off, 64<<20)
			if err := CopyRange(dst, src, off, n); err != nil {
				return err
			}
			off += n
		}
	}
	return nil
}

// hash writes the first size bytes of f to h, holes (the gaps between the
// data regions ext) as zeros.
func hash(ctx context.Context, h io.Writer, f *os.File, size int64, ext []Extent) error {
	buf := make([]byte, 4<<20)
	var off int64
	for _, e := range append(ext, Extent{size, size}) {
		for off < e.Start {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(zeros)), e.Start-off)
			h.Write(zeros[:n])
			off += n
		}
		for off < e.End {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), e.End-off)
			r, err := f.ReadAt(buf[:n], off)
			h.Write(buf[:r])
			off += int64(r)
			if err != nil && off < e.End {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("reading %s: file shrank while copying", f.Name())
				}
				return fmt.Errorf("reading %s: %w", f.Name(), err)
			}
		}
	}
	return nil
}
