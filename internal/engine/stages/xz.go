package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("xz", func(o *stageopt.XZ) Stage { return (*XZ)(o) })
}

// XZ is the xz stage; its options are stageopt.XZ.
type XZ stageopt.XZ

// Run compresses the file.
//
// xz's multi-threaded mode (the stage's documented output) compresses every
// block of BlockSize bytes on its own, so the stage runs one xz per block,
// as many at a time as the machine has cores, and writes the blocks into one
// stream with its index: the bytes are those of one multi-threaded xz over
// the whole file. A block of zeros, most of a sparse disk image, is
// compressed once and its result reused: xz's match finder is slow on long
// runs of zeros (about 40 MB/s per core), and a 4 GiB image with 0.7 GiB of
// data spent two thirds of its time on them.
func (o *XZ) Run(ctx context.Context, env *Env) error {
	in, err := inputFile(env, o.Input, o.InputFilename)
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	level, block := o.Level, int64(o.BlockSize)
	if level == 0 {
		level = 6
	}
	if block == 0 {
		block = 24 * MiB
	}
	logger(env).Info("xz: compressing", "input", o.InputFilename, "output", o.Filename, "level", level)
	return createAtomic(env.Out, o.Filename, func(f *os.File) error {
		if err := writeXZ(ctx, env, in, f, level, block); err != nil {
			return fmt.Errorf("xz: %w", err)
		}
		return f.Sync()
	})
}

// xzMinBlock is the smallest block size compressed block by block; below it
// one xz process per block would cost more than it saves, and one xz
// compresses the whole file (the same bytes, more slowly on zeros).
const xzMinBlock = 1 * MiB

// writeXZ writes in, compressed as by xz --threads=+N --block-size=block
// -level, to w.
func writeXZ(ctx context.Context, env *Env, in string, w io.Writer, level int, block int64) error {
	args := []string{"--compress", "--stdout", fmt.Sprintf("-%d", level), fmt.Sprintf("--block-size=%d", block)}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 || block < xzMinBlock {
		_, err := run(ctx, env, hostcmd.Cmd{Path: "xz", Stdin: f, Stdout: w,
			Args: append(args, fmt.Sprintf("--threads=+%d", runtime.NumCPU()))})
		return err
	}
	args = append(args, "--threads=+1")
	compress := func(ctx context.Context, r io.Reader) (xzBlock, error) {
		var out bytes.Buffer
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "xz", Stdin: r, Stdout: &out, Args: args}); err != nil {
			return xzBlock{}, err
		}
		return parseXZBlock(out.Bytes())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var zeroOnce sync.Once
	var zeroBlock xzBlock
	var zeroErr error
	type result struct {
		b   xzBlock
		err error
	}
	type job struct {
		off int64
		res chan result
	}
	workers := runtime.NumCPU()
	jobs := make(chan job)
	order := make(chan chan result, workers+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		defer close(jobs)
		defer close(order)
		for off := int64(0); off < size; off += block {
			j := job{off: off, res: make(chan result, 1)}
			select {
			case order <- j.res:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			buf, zeros := make([]byte, MiB), make([]byte, MiB)
			for j := range jobs {
				n := min(block, size-j.off)
				zero, err := zeroRange(f, j.off, n, buf, zeros)
				var r result
				switch {
				case err != nil:
					r.err = err
				case zero && n == block:
					zeroOnce.Do(func() {
						zeroBlock, zeroErr = compress(ctx, io.LimitReader(zeroReader{}, block))
					})
					r.b, r.err = zeroBlock, zeroErr
				default:
					r.b, r.err = compress(ctx, io.NewSectionReader(f, j.off, n))
				}
				j.res <- r
			}
		})
	}

	var flags []byte
	var index []xzRecord
	for res := range order {
		var r result
		select {
		case r = <-res:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		if flags == nil {
			flags = r.b.flags
			if _, err := w.Write(xzStreamHeader(flags)); err != nil {
				return err
			}
		} else if !bytes.Equal(flags, r.b.flags) {
			return fmt.Errorf("xz wrote blocks with different stream flags (%x, %x)", flags, r.b.flags)
		}
		if _, err := w.Write(r.b.data); err != nil {
			return err
		}
		index = append(index, r.b.record)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = w.Write(xzStreamTail(flags, index))
	return err
}

// zeroRange reports whether the n bytes of f at off are all zero: a hole, or
// data that reads as zeros. The answer depends on the content only, never on
// how the file system stores it, so the output does not either.
func zeroRange(f *os.File, off, n int64, buf, zeros []byte) (bool, error) {
	data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) || (err == nil && data >= off+n) {
		return true, nil
	}
	for pos := off; pos < off+n; {
		k := min(int64(len(buf)), off+n-pos)
		if _, err := f.ReadAt(buf[:k], pos); err != nil {
			return false, err
		}
		if !bytes.Equal(buf[:k], zeros[:k]) {
			return false, nil
		}
		pos += k
	}
	return true, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// xzRecord is a block's entry in the stream's index.
type xzRecord struct{ unpadded, uncompressed uint64 }

// xzBlock is the one block of a stream xz wrote, with the stream's flags.
type xzBlock struct {
	flags  []byte
	data   []byte // block header, compressed data, padding and check
	record xzRecord
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// parseXZBlock takes the block out of a stream of exactly one block (the
// .xz format: stream header, blocks, index, stream footer).
func parseXZBlock(s []byte) (xzBlock, error) {
	bad := func(why string) (xzBlock, error) {
		return xzBlock{}, fmt.Errorf("reading xz's output: %s", why)
	}
	if len(s) < 24 || !bytes.Equal(s[:6], xzMagic) || !bytes.Equal(s[len(s)-2:], []byte("YZ")) {
		return bad("not one .xz stream")
	}
	flags := s[6:8]
	if !bytes.Equal(s[len(s)-4:len(s)-2], flags) {
		return bad("stream header and footer flags differ")
	}
	indexSize := (int(binary.LittleEndian.Uint32(s[len(s)-8:len(s)-4])) + 1) * 4
	start := len(s) - 12 - indexSize
	if start < 12 {
		return bad("index larger than the stream")
	}
	idx := s[start : len(s)-12]
	if idx[0] != 0 {
		return bad("no index where the footer says")
	}
	p := 1
	count, ok := uvarint(idx, &p)
	if !ok || count != 1 {
		return bad("not exactly one block")
	}
	var r xzRecord
	if r.unpadded, ok = uvarint(idx, &p); !ok {
		return bad("bad index record")
	}
	if r.uncompressed, ok = uvarint(idx, &p); !ok {
		return bad("bad index record")
	}
	data := s[12:start]
	if uint64(len(data)) != (r.unpadded+3)&^3 {
		return bad("block size differs from its index record")
	}
	return xzBlock{flags: bytes.Clone(flags), data: data, record: r}, nil
}

func uvarint(b []byte, p *int) (uint64, bool) {
	v, n := binary.Uvarint(b[*p:])
	if n <= 0 || n > 9 {
		return 0, false
	}
	*p += n
	return v, true
}

func xzStreamHeader(flags []byte) []byte {
	h := append(bytes.Clone(xzMagic), flags...)
	return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(flags))
}

// xzStreamTail returns the stream's index of records and its footer.
func xzStreamTail(flags []byte, records []xzRecord) []byte {
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, uint64(len(records)))
	for _, r := range records {
		idx = binary.AppendUvarint(idx, r.unpadded)
		idx = binary.AppendUvarint(idx, r.uncompressed)
	}
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	foot := binary.LittleEndian.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, flags...)
	out := binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(foot))
	out = append(out, foot...)
	return append(out, 'Y', 'Z')
}
