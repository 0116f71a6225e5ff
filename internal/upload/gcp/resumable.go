package gcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/auth"
	"google.golang.org/api/googleapi"

	"github.com/kib-project/kib/internal/upload"
)

// The Cloud Storage JSON API's resumable upload protocol, as Google
// documents it ("Perform resumable uploads"): a POST opens a session and
// answers with its URI (Location); PUTs send chunks with Content-Range
// "bytes FIRST-LAST/TOTAL" and are answered 308 with Range "bytes=0-N"
// (what the server has persisted) until the last one, answered 200 with the
// object. After a cut connection the client asks the session how much it
// has — a PUT with no body and Content-Range "bytes */TOTAL" — and resumes
// from the byte after the persisted range, in the same session.
//
// The Go storage SDK's Writer resends a whole chunk after a cut and never
// asks, so kib speaks the protocol itself; the SDK still does the rest
// (object attributes, delete) and the credentials.

// objectResource is the part of the JSON API's object resource the upload
// sends and reads back.
type objectResource struct {
	Name        string            `json:"name"`
	Bucket      string            `json:"bucket,omitempty"`
	ContentType string            `json:"contentType,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	MD5Hash     string            `json:"md5Hash,omitempty"`
	Size        string            `json:"size,omitempty"`
}

// resumable uploads objects through resumable sessions.
type resumable struct {
	client *http.Client
	token  auth.TokenProvider // nil: no Authorization header
	base   string             // upload endpoint, e.g. https://storage.googleapis.com/upload/storage/v1/
	chunk  int64              // a multiple of 256 KiB
	// tries bounds the consecutive failures (cuts, 5xx, 429) before the
	// upload gives up; each is followed by a status query.
	tries   int
	backoff time.Duration
	log     *slog.Logger
}

// uploadBase is the upload endpoint that goes with a JSON API endpoint:
// the same host, path /upload/storage/v1/ (as the SDK resolves it).
func uploadBase(storageEndpoint string) (string, error) {
	if storageEndpoint == "" {
		return "https://storage.googleapis.com/upload/storage/v1/", nil
	}
	u, err := url.Parse(storageEndpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("gcp: storage endpoint %q: must be an absolute URL", storageEndpoint)
	}
	u.Path, u.RawPath, u.RawQuery = "/upload/storage/v1/", "", ""
	return u.String(), nil
}

// transientError marks a failure after which the session is asked how much
// it has and the upload goes on: a cut connection, 408, 429 or 5xx.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func (r *resumable) do(ctx context.Context, req *http.Request) (*http.Response, error) {
	if r.token != nil {
		tok, err := r.token.Token(ctx)
		if err != nil {
			return nil, err
		}
		typ := tok.Type
		if typ == "" {
			typ = "Bearer"
		}
		req.Header.Set("Authorization", typ+" "+tok.Value)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &transientError{err}
	}
	return resp, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// statusError turns a response that is not 2xx or 308 into the API's error
// (*googleapi.Error, with Google's message), transient or not.
func statusError(resp *http.Response) error {
	err := googleapi.CheckResponse(resp)
	if err == nil {
		err = fmt.Errorf("unexpected HTTP status %s", resp.Status)
	}
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return &transientError{err}
	}
	return err
}

// start opens a session for obj of size bytes and returns its URI.
func (r *resumable) start(ctx context.Context, bucket string, obj objectResource, size int64) (string, error) {
	body, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	u := r.base + "b/" + url.PathEscape(bucket) + "/o?uploadType=resumable&name=" + url.QueryEscape(obj.Name)
	var last error
	for try := 1; try <= r.tries; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json; charset=UTF-8")
		req.Header.Set("X-Upload-Content-Type", obj.ContentType)
		req.Header.Set("X-Upload-Content-Length", strconv.FormatInt(size, 10))
		resp, err := r.do(ctx, req)
		if err == nil {
			if resp.StatusCode/100 != 2 {
				err = statusError(resp)
			} else if loc := resp.Header.Get("Location"); loc != "" {
				drain(resp)
				return loc, nil
			} else {
				err = errors.New("the response opening the upload session has no session URI (Location)")
			}
			drain(resp)
		}
		var te *transientError
		if !errors.As(err, &te) {
			return "", err
		}
		last = err
		if err := r.sleep(ctx, try); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("opening the upload session, %d tries: %w", r.tries, last)
}

func (r *resumable) sleep(ctx context.Context, try int) error {
	d := r.backoff << min(try-1, 6)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// answer reads a session's answer: the object when the upload is complete,
// else the offset of the first byte the server does not have.
func answer(resp *http.Response) (*objectResource, int64, error) {
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		var o objectResource
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
			return nil, 0, fmt.Errorf("reading the uploaded object's resource: %w", err)
		}
		return &o, 0, nil
	case http.StatusPermanentRedirect: // "308 Resume Incomplete"
		next, err := parseRange(resp.Header.Get("Range"))
		return nil, next, err
	case http.StatusNotFound, http.StatusGone:
		return nil, 0, fmt.Errorf("the upload session is gone (it expired or was cancelled): %w", statusError(resp))
	}
	return nil, 0, statusError(resp)
}

// parseRange reads the Range header of a 308 answer: absent when nothing
// is persisted, else "bytes=0-N". It returns the offset of the next byte
// to send, N+1.
func parseRange(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	last, ok := strings.CutPrefix(h, "bytes=0-")
	if ok && last != "" && strings.Trim(last, "0123456789") == "" {
		if n, err := strconv.ParseInt(last, 10, 64); err == nil && n < math.MaxInt64 {
			return n + 1, nil
		}
	}
	return 0, fmt.Errorf("the upload session answered Range %q; want bytes=0-N", h)
}

// countingReader reports the bytes read past off to progress.
type countingReader struct {
	r        io.Reader
	off, n   int64
	total    int64
	progress upload.Progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.off+c.n, c.total)
	}
	return n, err
}

// put sends bytes [off, end) of f.
func (r *resumable) put(ctx context.Context, session string, f io.ReaderAt, off, end, size int64, progress upload.Progress) (*objectResource, int64, error) {
	body := &countingReader{r: io.NewSectionReader(f, off, end-off), off: off, total: size, progress: progress}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, session, body)
	if err != nil {
		return nil, 0, err
	}
	req.ContentLength = end - off
	if size == 0 {
		req.Header.Set("Content-Range", "bytes */0")
	} else {
		req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end-1, size))
	}
	resp, err := r.do(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	return answer(resp)
}

// query asks the session how much it has: Content-Range "bytes */TOTAL"
// and no body.
func (r *resumable) query(ctx context.Context, session string, size int64) (*objectResource, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, session, http.NoBody)
	if err != nil {
		return nil, 0, err
	}
	req.ContentLength = 0
	req.Header.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	resp, err := r.do(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	return answer(resp)
}

// cancel deletes the session (the API answers 499), so nothing of a failed
// upload lingers.
func (r *resumable) cancel(ctx context.Context, session string) {
	ctx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, session, http.NoBody)
	if err != nil {
		return
	}
	if resp, err := r.do(ctx, req); err == nil {
		drain(resp)
	}
}

// upload sends size bytes of f through the session, chunk by chunk. After
// a transient failure it queries the session and resumes from the offset
// the server acknowledges; it gives up after r.tries failures in a row.
func (r *resumable) upload(ctx context.Context, session string, f io.ReaderAt, size int64, progress upload.Progress) (*objectResource, error) {
	var off int64
	failures := 0
	for {
		end := min(off+r.chunk, size)
		obj, next, err := r.put(ctx, session, f, off, end, size, progress)
		queried := false
		for err != nil {
			var te *transientError
			if !errors.As(err, &te) {
				return nil, err
			}
			failures++
			if failures >= r.tries {
				return nil, fmt.Errorf("%d tries in a row failed: %w", failures, err)
			}
			r.log.Warn("gcp: upload interrupted; asking the session how much it has", "offset", off, "error", err)
			if err := r.sleep(ctx, failures); err != nil {
				return nil, err
			}
			obj, next, err = r.query(ctx, session, size)
			queried = true
			if err == nil {
				r.log.Info("gcp: resuming the upload", "offset", next, "size", size)
			}
		}
		if obj != nil {
			return obj, nil
		}
		if next > size {
			return nil, fmt.Errorf("the upload session claims %d bytes of %d", next, size)
		}
		switch {
		case next > off:
			failures = 0
		case !queried:
			// A chunk was taken but the session did not move on.
			failures++
			if failures >= r.tries {
				return nil, fmt.Errorf("the upload session stays at offset %d after %d chunks", off, failures)
			}
		}
		off = next
		if progress != nil {
			progress(off, size)
		}
	}
}
