package koji

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/adler"
)

// UploadProgress reports the state of one file's upload.
type UploadProgress struct {
	Name  string // file name on the hub
	Sent  int64  // bytes confirmed by the hub
	Total int64  // file size
}

// UploadResult is what the hub holds after an upload.
type UploadResult struct {
	Name   string
	Size   int64
	SHA256 string // hex: given or computed while sending; CGImport checks it
}

// UploadFile is one file for UploadFiles.
type UploadFile struct {
	Path string // local file
	Name string // name on the hub; the base name of Path if empty
	// SHA256, if known (e.g. from the local build's build-info.json), spares
	// hashing the file on the client. It is still verified on the hub: by
	// the final checkUpload with UploadVerifySHA256, and by CGImport, which
	// checks every output's digest.
	SHA256 string
	// Source, if set, is read instead of the file at Path (e.g. an artifact
	// in object storage); Size is then its length.
	Source io.ReaderAt
	Size   int64
}

// ErrUploadMismatch is wrapped by errors about the hub holding other bytes
// than were sent.
var ErrUploadMismatch = errors.New("koji: upload verification failed")

// UniqueUploadDir returns a fresh upload directory name under prefix, like
// "kib-koji/20261122T050102-1f3a9c0d4e5b6a7f".
func UniqueUploadDir(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%s-%s", strings.TrimSuffix(prefix, "/"), time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(b))
}

// Upload sends size bytes from src to <dir>/<name> under the hub's work
// directory with raw octet-stream POSTs in chunks of Options.UploadChunkSize.
// Each chunk's size and adler32 are checked against the hub's answer; the
// next chunk is read and the sums are computed while a chunk is in flight.
// After a transport error the upload resumes from what the hub has
// (checkUpload), within the retry policy. At the end the hub's file size is
// compared with what was sent, and also its adler32 if a chunk was resumed
// (UploadVerifyKoji) or its sha256 (UploadVerifySHA256).
// progress, if not nil, is called after each chunk.
func (c *Client) Upload(ctx context.Context, dir, name string, src io.ReaderAt, size int64, progress func(UploadProgress)) (*UploadResult, error) {
	return c.upload(ctx, dir, name, src, size, "", progress)
}

// upload is Upload with an optional known sha256 (hex) of the content.
func (c *Client) upload(ctx context.Context, dir, name string, src io.ReaderAt, size int64, knownSHA256 string, progress func(UploadProgress)) (*UploadResult, error) {
	if knownSHA256 != "" && !isHexSHA256(knownSHA256) {
		return nil, fmt.Errorf("koji: upload %s: sha256 %q is not 64 lower-case hex digits", name, knownSHA256)
	}
	if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("koji: upload name %q: must be a bare file name not starting with '.'", name)
	}
	if !c.LoggedIn() {
		return nil, fmt.Errorf("koji: upload %s: not logged in", name)
	}
	bufs := [2][]byte{make([]byte, c.chunk), make([]byte, c.chunk)}
	cur := 0
	sum := sha256.New()
	var hashed int64   // bytes fed to sum; never more than once per offset
	var acked int64    // bytes the hub confirmed
	whole := uint32(1) // adler32 of the confirmed bytes
	failures := 0
	deadline := time.Now().Add(c.retry.Deadline)
	overwrite := false
	read := func(buf []byte, off int64) (int, error) {
		n := int(min(int64(len(buf)), size-off))
		if n <= 0 {
			return 0, nil
		}
		m, err := src.ReadAt(buf[:n], off)
		if m < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: the source is shorter than its size %d", io.ErrUnexpectedEOF, size)
			}
			return 0, fmt.Errorf("koji: upload %s: reading at %d: %w", name, off, err)
		}
		return n, nil
	}
	n, err := read(bufs[cur], 0)
	if err != nil {
		return nil, err
	}
chunks:
	for {
		chunk := bufs[cur][:n]
		// While the chunk is sent: its adler32, the running sha256, and
		// reading ahead the next chunk into the other buffer.
		var (
			wg        sync.WaitGroup
			sum32     uint32
			adlerDone = make(chan struct{})
			nextN     int
			nextErr   error
			offset    = acked
			nextStart = acked + int64(n)
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			sum32 = adler.Checksum(chunk)
			close(adlerDone)
			nextN, nextErr = read(bufs[1-cur], nextStart)
		}()
		go func() {
			defer wg.Done()
			if knownSHA256 == "" && hashed == offset {
				sum.Write(chunk)
				hashed += int64(len(chunk))
			}
		}()
		err := c.uploadChunk(ctx, dir, name, acked, chunk, overwrite, func() uint32 { <-adlerDone; return sum32 })
		wg.Wait()
		if err == nil {
			whole = adler.Combine(whole, sum32, int64(len(chunk)))
			acked = nextStart
			overwrite = false
			if progress != nil {
				progress(UploadProgress{Name: name, Sent: acked, Total: size})
			}
			if acked >= size {
				break
			}
			if nextErr != nil {
				return nil, nextErr
			}
			cur, n = 1-cur, nextN
			continue
		}
		var f *Fault
		if errors.As(err, &f) || ctx.Err() != nil {
			return nil, fmt.Errorf("koji: upload %s at offset %d: %w", name, acked, err)
		}
		failures++
		if failures > c.retry.MaxRetries || time.Now().After(deadline) {
			return nil, fmt.Errorf("koji: upload %s at offset %d: giving up after %d failures: %w", name, acked, failures, err)
		}
		c.log.DebugContext(ctx, "koji upload chunk failed, resuming", "name", name, "offset", acked, "err", err)
		if serr := c.sleepF(ctx, c.retry.wait(failures)); serr != nil {
			return nil, fmt.Errorf("koji: upload %s: %w (after %w)", name, serr, err)
		}
		// Resend from acked, truncating (overwrite) whatever partial data
		// the hub has beyond it, unless it already has the whole chunk.
		overwrite = true
		how, rerr := c.resumePoint(ctx, dir, name, acked, len(chunk), sum32)
		if rerr != nil {
			var f *Fault
			if errors.As(rerr, &f) {
				return nil, fmt.Errorf("koji: upload %s: checking what the hub has: %w", name, rerr)
			}
			continue // transport error again: counted on the next round
		}
		switch how {
		case resumeRestart:
			// The hub lost confirmed data: start over (offset 0 with
			// overwrite truncates whatever is left).
			c.log.DebugContext(ctx, "koji upload: hub lost confirmed data, restarting", "name", name, "confirmed", acked)
			acked, hashed, whole = 0, 0, 1
			sum.Reset()
			if n, err = read(bufs[cur], 0); err != nil {
				return nil, err
			}
		case resumeSkip:
			whole = adler.Combine(whole, sum32, int64(len(chunk)))
			acked = nextStart
			if progress != nil {
				progress(UploadProgress{Name: name, Sent: acked, Total: size})
			}
			if acked >= size {
				break chunks
			}
			if nextErr != nil {
				return nil, nextErr
			}
			cur, n = 1-cur, nextN
		}
	}
	want := knownSHA256
	if want == "" {
		want = hex.EncodeToString(sum.Sum(nil))
	}
	var info struct {
		Size      int64  `json:"size"`
		HexDigest string `json:"hexdigest"`
	}
	args := []any{dir, name}
	wantDigest := ""
	switch {
	case c.verify == UploadVerifySHA256:
		args = append(args, Kwargs{"verify": "sha256"})
		wantDigest = want
	case failures > 0:
		// As Koji's client: after a resumed chunk, the whole file's adler32.
		args = append(args, Kwargs{"verify": "adler32"})
		wantDigest = fmt.Sprintf("%08x", whole)
	}
	v, err := c.Call(ctx, "checkUpload", args...)
	if err != nil {
		return nil, fmt.Errorf("koji: upload %s: final check: %w", name, err)
	}
	if v == nil {
		return nil, fmt.Errorf("koji: upload %s: %w: the hub has no such file", name, ErrUploadMismatch)
	}
	if err := Convert(v, &info); err != nil {
		return nil, err
	}
	if info.Size != size || info.HexDigest != wantDigest && wantDigest != "" {
		return nil, fmt.Errorf("koji: upload %s: %w: hub has %d bytes (digest %q), sent %d bytes (digest %q)", name, ErrUploadMismatch, info.Size, info.HexDigest, size, wantDigest)
	}
	return &UploadResult{Name: name, Size: size, SHA256: want}, nil
}

// How an upload goes on after a failed chunk.
const (
	resumeResend  = iota // send the chunk again (truncating partial data)
	resumeSkip           // the hub has exactly the chunk: go on after it
	resumeRestart        // the hub lost confirmed data: start from 0
)

// resumePoint asks the hub what it has after a failed chunk at offset
// acked; the failed chunk has n bytes with adler32 sum32.
func (c *Client) resumePoint(ctx context.Context, dir, name string, acked int64, n int, sum32 uint32) (int, error) {
	v, err := c.Call(ctx, "checkUpload", dir, name, Kwargs{"verify": "adler32", "tail": int64(n)})
	if err != nil {
		return resumeResend, err
	}
	if v == nil {
		if acked > 0 {
			return resumeRestart, nil
		}
		return resumeResend, nil
	}
	var info struct {
		Size      int64  `json:"size"`
		HexDigest string `json:"hexdigest"`
	}
	if err := Convert(v, &info); err != nil {
		return resumeResend, err
	}
	switch {
	case info.Size < acked:
		return resumeRestart, nil
	case n > 0 && info.Size == acked+int64(n) && info.HexDigest == fmt.Sprintf("%08x", sum32):
		return resumeSkip, nil
	}
	return resumeResend, nil
}

// uploadChunk POSTs one chunk and checks the hub's size and adler32.
func (c *Client) uploadChunk(ctx context.Context, dir, name string, offset int64, chunk []byte, overwrite bool, adler func() uint32) error {
	q := url.Values{}
	q.Set("filename", name)
	q.Set("filepath", dir)
	q.Set("fileverify", "adler32")
	q.Set("offset", strconv.FormatInt(offset, 10))
	if overwrite {
		q.Set("overwrite", "1")
	}
	v, err := c.post(ctx, "", q, "rawUpload", "application/octet-stream", bytes.NewReader(chunk), int64(len(chunk)), c.sessionAuth())
	if err != nil {
		return err
	}
	var res struct {
		Size      int64  `json:"size"`
		Offset    int64  `json:"offset"`
		HexDigest string `json:"hexdigest"`
	}
	if err := Convert(v, &res); err != nil {
		return err
	}
	want := fmt.Sprintf("%08x", adler())
	if res.Size != int64(len(chunk)) || res.HexDigest != want || res.Offset != offset {
		return &TransportError{Method: "rawUpload", Err: fmt.Errorf("%w: chunk at %d: hub wrote %d bytes at %d adler32 %s, sent %d bytes adler32 %s",
			ErrUploadMismatch, offset, res.Size, res.Offset, res.HexDigest, len(chunk), want)}
	}
	return nil
}

// UploadPath uploads a local file to <dir>/<name> (name defaults to the base
// name of path).
func (c *Client) UploadPath(ctx context.Context, dir, path, name string, progress func(UploadProgress)) (*UploadResult, error) {
	return c.uploadPath(ctx, dir, UploadFile{Path: path, Name: name}, progress)
}

func (c *Client) uploadPath(ctx context.Context, dir string, uf UploadFile, progress func(UploadProgress)) (*UploadResult, error) {
	path, name := uf.Path, uf.Name
	if name == "" {
		name = filepath.Base(path)
	}
	if uf.Source != nil {
		return c.upload(ctx, dir, name, uf.Source, uf.Size, uf.SHA256, progress)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("koji: upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("koji: upload: %w", err)
	}
	return c.upload(ctx, dir, name, f, st.Size(), uf.SHA256, progress)
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// UploadFiles uploads files into dir, at most Options.UploadParallel at a
// time. The first failure cancels the others. progress may be called
// concurrently.
func (c *Client) UploadFiles(ctx context.Context, dir string, files []UploadFile, progress func(UploadProgress)) ([]*UploadResult, error) {
	seen := map[string]bool{}
	for _, f := range files {
		n := f.Name
		if n == "" {
			n = filepath.Base(f.Path)
		}
		if seen[n] {
			return nil, fmt.Errorf("koji: upload: two files named %q", n)
		}
		seen[n] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]*UploadResult, len(files))
	sem := make(chan struct{}, c.para)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for i, f := range files {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := c.uploadPath(ctx, dir, f, progress)
			if err != nil {
				once.Do(func() { firstErr = err; cancel() })
				return
			}
			results[i] = r
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return results, nil
}
