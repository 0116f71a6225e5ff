package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/kib-project/kib/internal/sparse"
	"github.com/kib-project/kib/internal/upload"
)

// PageSize is the page blob's unit: every write starts and ends on it.
const PageSize = 512

// RangeSize is the most one Put Page request may carry (4 MiB); the file is
// sent in ranges of this size, several at once.
const RangeSize = 4 << 20

// metaSHA256 is the blob metadata key holding the image's sha256; an
// existing blob with the same digest and size is resumed, not recreated.
const metaSHA256 = "kib_sha256"

// pageBlob is the part of *pageblob.Client the upload uses.
type pageBlob interface {
	Create(ctx context.Context, size int64, o *pageblob.CreateOptions) (pageblob.CreateResponse, error)
	UploadPages(ctx context.Context, body io.ReadSeekCloser, r blob.HTTPRange, o *pageblob.UploadPagesOptions) (pageblob.UploadPagesResponse, error)
	GetProperties(ctx context.Context, o *blob.GetPropertiesOptions) (blob.GetPropertiesResponse, error)
	NewGetPageRangesPager(o *pageblob.GetPageRangesOptions) interface {
		More() bool
		NextPage(ctx context.Context) (pageblob.GetPageRangesResponse, error)
	}
}

// pbClient adapts *pageblob.Client (whose pager is a concrete type) to pageBlob.
type pbClient struct{ *pageblob.Client }

func (c pbClient) NewGetPageRangesPager(o *pageblob.GetPageRangesOptions) interface {
	More() bool
	NextPage(ctx context.Context) (pageblob.GetPageRangesResponse, error)
} {
	return c.Client.NewGetPageRangesPager(o)
}

// PageBlobStats says what one page-blob upload did.
type PageBlobStats struct {
	Size     int64 // the file's size
	Sent     int64 // bytes sent in Put Page requests
	Skipped  int64 // bytes of ranges not sent because they are holes or zeros
	Resumed  int64 // bytes of ranges already on the blob from an earlier try
	Requests int   // Put Page requests
}

// PageBlobOptions tunes UploadPageBlob.
type PageBlobOptions struct {
	// Parallel is the number of ranges in flight; 0 means 4.
	Parallel int
	// Dense sends every range, zeros included (the baseline the sparse
	// upload is measured against).
	Dense bool
	// SHA256 is the file's digest, stored as blob metadata so that an
	// interrupted upload resumes; empty disables resuming.
	SHA256   string
	Progress upload.Progress
	Logger   *slog.Logger
}

// UploadPageBlob writes the file at path to the page blob c: it creates the
// blob (or resumes one with the same size and SHA256 metadata), finds the
// file's data extents with SEEK_DATA/SEEK_HOLE, and sends each 4 MiB range
// that holds a non-zero byte, Parallel at a time. The file's size must be a
// multiple of 512 bytes.
func UploadPageBlob(ctx context.Context, c pageBlob, path string, o PageBlobOptions) (PageBlobStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return PageBlobStats{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PageBlobStats{}, err
	}
	size := fi.Size()
	st := PageBlobStats{Size: size}
	if size%PageSize != 0 {
		return st, fmt.Errorf("page blob: %s is %d bytes, not a multiple of %d (a page blob holds whole 512-byte pages)", path, size, PageSize)
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	done, err := prepareBlob(ctx, c, size, o.SHA256)
	if err != nil {
		return st, err
	}
	if len(done) > 0 {
		log.Info("azure: resuming page blob upload", "ranges_on_blob", len(done))
	}

	var extents []extent
	if o.Dense {
		extents = []extent{{0, size}}
	} else if extents, err = dataExtents(f, size); err != nil {
		return st, err
	}

	var sent, skipped, resumed atomic.Int64
	var requests atomic.Int64
	report := func() {
		if o.Progress != nil {
			o.Progress(sent.Load()+skipped.Load()+resumed.Load(), size)
		}
	}

	type job struct{ off, n int64 }
	jobs := make(chan job)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, RangeSize)
			for j := range jobs {
				b := buf[:j.n]
				if _, err := f.ReadAt(b, j.off); err != nil && !errors.Is(err, io.EOF) {
					cancel(fmt.Errorf("reading %s at %d: %w", path, j.off, err))
					return
				}
				if !o.Dense && allZero(b) {
					skipped.Add(j.n)
					report()
					continue
				}
				_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(b)), blob.HTTPRange{Offset: j.off, Count: j.n}, nil)
				if err != nil {
					cancel(fmt.Errorf("put page %d-%d: %w", j.off, j.off+j.n-1, err))
					return
				}
				requests.Add(1)
				sent.Add(j.n)
				report()
			}
		}()
	}

	// Walk the file in aligned ranges; holes between extents are skipped
	// without reading them.
feed:
	for off := int64(0); off < size; off += RangeSize {
		n := min(RangeSize, size-off)
		if !o.Dense && !overlaps(extents, off, off+n) {
			skipped.Add(n)
			report()
			continue
		}
		if done.covers(off, off+n) {
			resumed.Add(n)
			report()
			continue
		}
		select {
		case jobs <- job{off, n}:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	st.Sent, st.Skipped, st.Resumed, st.Requests = sent.Load(), skipped.Load(), resumed.Load(), int(requests.Load())
	if err := context.Cause(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// prepareBlob creates the blob, or finds the ranges already written when a
// blob of the same size and digest exists from an earlier try.
func prepareBlob(ctx context.Context, c pageBlob, size int64, sha string) (ranges, error) {
	if sha != "" {
		props, err := c.GetProperties(ctx, nil)
		switch {
		case err == nil:
			if props.ContentLength != nil && *props.ContentLength == size && metaValue(props.Metadata, metaSHA256) == sha {
				return writtenRanges(ctx, c)
			}
		case bloberror.HasCode(err, bloberror.BlobNotFound):
		default:
			return nil, fmt.Errorf("reading the blob's properties: %w", err)
		}
	}
	opts := &pageblob.CreateOptions{}
	if sha != "" {
		opts.Metadata = map[string]*string{metaSHA256: &sha}
	}
	if _, err := c.Create(ctx, size, opts); err != nil {
		return nil, fmt.Errorf("creating the page blob: %w", err)
	}
	return nil, nil
}

// metaValue looks a metadata key up case-insensitively, as the service
// may return keys in another case.
func metaValue(m map[string]*string, key string) string {
	for k, v := range m {
		if v != nil && equalFold(k, key) {
			return *v
		}
	}
	return ""
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

func writtenRanges(ctx context.Context, c pageBlob) (ranges, error) {
	var out ranges
	p := c.NewGetPageRangesPager(nil)
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the blob's page ranges: %w", err)
		}
		for _, r := range page.PageRange {
			if r.Start != nil && r.End != nil {
				out = append(out, extent{*r.Start, *r.End + 1})
			}
		}
	}
	return out, nil
}

// extent is the half-open byte range [start, end).
type extent struct{ start, end int64 }

type ranges []extent

// covers reports whether [start, end) lies inside the union of r; r is
// sorted and its neighbours may touch (the service merges them anyway).
func (r ranges) covers(start, end int64) bool {
	pos := start
	for _, e := range r {
		if e.start > pos {
			if e.start >= end {
				break
			}
			return false
		}
		if e.end > pos {
			pos = e.end
		}
		if pos >= end {
			return true
		}
	}
	return pos >= end
}

func overlaps(ex []extent, start, end int64) bool {
	for _, e := range ex {
		if e.start < end && e.end > start {
			return true
		}
	}
	return false
}

// dataExtents lists the file's data regions (sparse.Data).
func dataExtents(f *os.File, size int64) ([]extent, error) {
	ext, err := sparse.Data(f, size)
	if err != nil {
		return nil, err
	}
	out := make([]extent, len(ext))
	for i, e := range ext {
		out[i] = extent{e.Start, e.End}
	}
	return out, nil
}

var zeros = make([]byte, RangeSize)

// allZero reports whether b (at most RangeSize bytes) holds only zeros.
func allZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }
