package stages

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"

	"github.com/kib-project/kib/internal/stageopt"
)

// gzipBlockSize is the input size of each block a parallelGzip compresses
// on its own. Part of the output's definition: changing it changes the bytes.
const gzipBlockSize = 1 << 20

// gzipDictSize is how much of the previous block's input each block uses as
// its dictionary (deflate's whole window), so parallel compression costs
// almost nothing in size.
const gzipDictSize = 32 << 10

// parallelGzip is a gzip writer that compresses blocks of gzipBlockSize
// bytes on several cores at once, as pigz does: each block is a run of
// deflate blocks ending in a sync flush (the last one in the final block),
// primed with the previous block's last 32 KiB, and the blocks are
// concatenated into one deflate stream. The output is a single gzip member
// that any gunzip reads; it depends on the input, the level and the block
// size, never on the number of workers or their timing. The header has no
// name and no time.
type parallelGzip struct {
	w     io.Writer
	level int
	sem   chan struct{}
	queue chan *gzBlock
	done  chan struct{}

	buf  []byte
	prev []byte // the last gzipDictSize bytes of the previous block
	crc  uint32
	size uint32

	bufs   sync.Pool // *[]byte
	mu     sync.Mutex
	err    error
	closed bool
}

type gzBlock struct {
	in, dict []byte
	last     bool
	out      bytes.Buffer
	err      error
	ready    chan struct{}
}

// newParallelGzip returns a writer of a gzip stream at level (1-9) to w,
// compressing on workers goroutines.
func newParallelGzip(w io.Writer, level, workers int) (*parallelGzip, error) {
	if level < flate.BestSpeed || level > flate.BestCompression {
		return nil, &stageopt.OptionError{Field: "level", Rule: fmt.Sprintf("must be 1 to 9, got %d", level)}
	}
	workers = max(workers, 1)
	z := &parallelGzip{w: w, level: level, sem: make(chan struct{}, workers),
		queue: make(chan *gzBlock, workers), done: make(chan struct{})}
	// Header: magic, deflate, no flags, no time, no extra flags, OS unknown.
	if _, err := w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return nil, err
	}
	go z.writeOut()
	return z, nil
}

// Write buffers p and hands every full block to a compressor.
func (z *parallelGzip) Write(p []byte) (int, error) {
	if err := z.failed(); err != nil {
		return 0, err
	}
	if z.closed {
		return 0, errors.New("gzip: write after close")
	}
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
	for len(p) > 0 {
		if z.buf == nil {
			z.buf = z.getBuf()
		}
		k := min(len(p), gzipBlockSize-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == gzipBlockSize {
			z.submit(false)
		}
	}
	return n, z.failed()
}

// Close compresses what is buffered, writes the trailer and waits for all
// output to be written. It does not close the underlying writer.
func (z *parallelGzip) Close() error {
	if z.closed {
		return z.failed()
	}
	z.closed = true
	if z.buf == nil {
		z.buf = z.getBuf()
	}
	z.submit(true)
	close(z.queue)
	<-z.done
	if err := z.failed(); err != nil {
		return err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], z.crc)
	binary.LittleEndian.PutUint32(trailer[4:], z.size)
	_, err := z.w.Write(trailer[:])
	return err
}

func (z *parallelGzip) getBuf() []byte {
	if b, ok := z.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, gzipBlockSize)
}

// submit queues the buffered block (in order) and starts its compression
// when a worker is free.
func (z *parallelGzip) submit(last bool) {
	b := &gzBlock{in: z.buf, dict: z.prev, last: last, ready: make(chan struct{})}
	if len(z.buf) >= gzipDictSize {
		z.prev = append([]byte(nil), z.buf[len(z.buf)-gzipDictSize:]...)
	} else {
		z.prev = append(z.prev, z.buf...)
		z.prev = z.prev[max(0, len(z.prev)-gzipDictSize):]
	}
	z.buf = nil
	z.queue <- b // blocks when workers blocks are in flight: bounded memory
	z.sem <- struct{}{}
	go func() {
		defer func() { <-z.sem }()
		z.compress(b)
	}()
}

func (z *parallelGzip) compress(b *gzBlock) {
	defer close(b.ready)
	// A new compressor for every block (not a reset one from a pool): its
	// output then depends on nothing but the block and its dictionary.
	fw, err := flate.NewWriterDict(&b.out, z.level, b.dict)
	if err != nil {
		b.err = err
		return
	}
	b.out.Grow(len(b.in)/2 + 1024)
	if _, err := fw.Write(b.in); err != nil {
		b.err = err
		return
	}
	if b.last {
		b.err = fw.Close()
	} else {
		b.err = fw.Flush()
	}
}

// writeOut writes the compressed blocks in order.
func (z *parallelGzip) writeOut() {
	defer close(z.done)
	for b := range z.queue {
		<-b.ready
		err := b.err
		if err == nil && z.failed() == nil {
			_, err = z.w.Write(b.out.Bytes())
		}
		if err != nil {
			z.mu.Lock()
			if z.err == nil {
				z.err = err
			}
			z.mu.Unlock()
		}
		in := b.in
		b.in, b.out = nil, bytes.Buffer{}
		z.bufs.Put(&in)
	}
}

func (z *parallelGzip) failed() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}
