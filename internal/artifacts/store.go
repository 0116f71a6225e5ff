package artifacts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/awss3"
)

// Config is how kib reaches the store: the [artifacts] table of kib.toml.
// The zero value of each field means its default.
type Config struct {
	// Endpoint is the URL of an S3-compatible store (path-style requests).
	// Default: AWS's endpoint of the region.
	Endpoint string
	// Region defaults to "us-east-1".
	Region string
	// AccessKeyID and SecretAccessKey, when set, replace the SDK's default
	// credential chain (environment, ~/.aws, instance role).
	AccessKeyID, SecretAccessKey string
	// PartSize of multipart uploads; default 16 MiB. Files smaller than a
	// part are sent in one PUT.
	PartSize int64
	// Concurrency is the number of parts in flight; default 8.
	Concurrency int
	// StateDir keeps the state of unfinished multipart uploads so that a
	// cut upload resumes; default the user's cache directory.
	StateDir string
	// HTTPClient sends the requests; default the SDK's.
	HTTPClient *http.Client
}

// Store is an artifact store in one bucket under one prefix. It is safe for
// concurrent use. Methods on a nil *Store treat every location as a local
// file.
type Store struct {
	loc Location
	up  *awss3.Uploader
	c   *s3.Client
}

// New returns the store at loc. It reads the SDK's shared configuration
// (credentials, profiles) but sends no request; Check does.
func New(ctx context.Context, loc Location, cfg Config) (*Store, error) {
	up, err := awss3.New(awss3.Config{
		Bucket: loc.Bucket, Endpoint: cfg.Endpoint, Region: cfg.Region,
		AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey,
		PartSize: cfg.PartSize, Concurrency: cfg.Concurrency, StateDir: cfg.StateDir, HTTPClient: cfg.HTTPClient,
	})
	if err != nil {
		return nil, err
	}
	c, err := up.Client(ctx, "")
	if err != nil {
		return nil, err
	}
	return &Store{loc: loc, up: up, c: c}, nil
}

// Location returns where the store keeps artifacts.
func (s *Store) Location() Location { return s.loc }

// Check asks the store for the bucket, so that a wrong endpoint, bucket or
// credential is reported at start.
func (s *Store) Check(ctx context.Context) error {
	if _, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.loc.Bucket)}); err != nil {
		return fmt.Errorf("bucket %s: %w", s.loc.Bucket, err)
	}
	return nil
}

// Owns reports whether location names an object of the store (false on a
// nil store).
func (s *Store) Owns(location string) bool {
	return s != nil && strings.HasPrefix(location, s.loc.String())
}

// NewDir returns a fresh place, s3://bucket/prefix/jobs/<jobID>/<attempt>/,
// for the artifacts of one attempt of a build job: an attempt that was
// given up and still writes cannot overwrite its successor's files.
func (s *Store) NewDir(jobID string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return s.loc.URL(s.loc.Prefix + "jobs/" + jobID + "/" + hex.EncodeToString(b[:]) + "/")
}

func (s *Store) key(location string) (string, error) {
	if !s.Owns(location) {
		return "", fmt.Errorf("%s: not in the artifact store %s", location, s.loc)
	}
	k := strings.TrimPrefix(location, "s3://"+s.loc.Bucket+"/")
	if k == "" || strings.HasSuffix(k, "/") {
		return "", fmt.Errorf("%s: not an object", location)
	}
	return k, nil
}

// Put stores the local file path at location, with its sha256 (hex) as the
// object's metadata. Large files go as a resumable multipart upload of
// parallel parts.
func (s *Store) Put(ctx context.Context, location, path, sha256 string, size int64) error {
	key, err := s.key(location)
	if err != nil {
		return err
	}
	if size >= s.up.PartSize(size) {
		err := s.up.Put(ctx, s.c, upload.Artifact{Path: path, SHA256: sha256, Size: size}, key, false, nil)
		if err != nil {
			return fmt.Errorf("storing %s: %w", location, err)
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("storing %s: %s is %d bytes, not %d", location, path, st.Size(), size)
	}
	_, err = s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.loc.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(size),
		ContentType: aws.String("application/octet-stream"), Metadata: map[string]string{"sha256": sha256},
	})
	if err != nil {
		return fmt.Errorf("storing %s: %w", location, err)
	}
	return nil
}

// Info is what the store says of an object.
type Info struct {
	Size    int64
	SHA256  string // from the object's metadata; "" if it has none
	ModTime time.Time
}

// Stat returns the size and recorded sha256 of the object at location.
func (s *Store) Stat(ctx context.Context, location string) (Info, error) {
	key, err := s.key(location)
	if err != nil {
		return Info{}, err
	}
	h, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.loc.Bucket), Key: aws.String(key)})
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", location, err)
	}
	return Info{Size: aws.ToInt64(h.ContentLength), SHA256: h.Metadata["sha256"], ModTime: aws.ToTime(h.LastModified)}, nil
}

// Reader reads an artifact: sequentially (Read, Seek) or at offsets
// (ReadAt, for Koji's chunked upload).
type Reader interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
	// Size is the artifact's length in bytes.
	Size() int64
	// ModTime is when the artifact was written.
	ModTime() time.Time
}

// Open opens the artifact at location: an object of the store, or else a
// local file.
func (s *Store) Open(ctx context.Context, location string) (Reader, error) {
	if !s.Owns(location) {
		f, err := os.Open(location)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		return &file{File: f, st: st}, nil
	}
	key, err := s.key(location)
	if err != nil {
		return nil, err
	}
	info, err := s.Stat(ctx, location)
	if err != nil {
		return nil, err
	}
	return &Object{ctx: ctx, s: s, key: key, loc: location, info: info}, nil
}

type file struct {
	*os.File
	st os.FileInfo
}

func (f *file) Size() int64        { return f.st.Size() }
func (f *file) ModTime() time.Time { return f.st.ModTime() }

// Object reads an object of the store with ranged GETs. It keeps the
// context of Open for its reads, since io.Reader has none. It is not safe
// for concurrent Read/Seek; ReadAt may be called concurrently.
type Object struct {
	ctx  context.Context
	s    *Store
	key  string
	loc  string
	info Info

	off     int64
	body    io.ReadCloser
	bodyOff int64
}

var _ Reader = (*Object)(nil)

// Size implements Reader.
func (o *Object) Size() int64 { return o.info.Size }

// ModTime implements Reader.
func (o *Object) ModTime() time.Time { return o.info.ModTime }

// SHA256 is the digest recorded with the object ("" if none).
func (o *Object) SHA256() string { return o.info.SHA256 }

func (o *Object) get(off, end int64) (io.ReadCloser, error) {
	rng := fmt.Sprintf("bytes=%d-", off)
	if end >= 0 {
		rng = fmt.Sprintf("bytes=%d-%d", off, end)
	}
	out, err := o.s.c.GetObject(o.ctx, &s3.GetObjectInput{Bucket: aws.String(o.s.loc.Bucket), Key: aws.String(o.key), Range: aws.String(rng)})
	if err != nil {
		return nil, fmt.Errorf("reading %s at %d: %w", o.loc, off, err)
	}
	return out.Body, nil
}

// Read implements io.Reader with one streaming GET from the current offset
// (a new one after a Seek).
func (o *Object) Read(p []byte) (int, error) {
	if o.off >= o.info.Size {
		return 0, io.EOF
	}
	if o.body == nil || o.bodyOff != o.off {
		if o.body != nil {
			o.body.Close()
		}
		b, err := o.get(o.off, -1)
		if err != nil {
			o.body = nil
			return 0, err
		}
		o.body, o.bodyOff = b, o.off
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	o.bodyOff += int64(n)
	if errors.Is(err, io.EOF) {
		if o.off < o.info.Size {
			return n, fmt.Errorf("reading %s: %w at %d of %d bytes", o.loc, io.ErrUnexpectedEOF, o.off, o.info.Size)
		}
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", o.loc, err)
	}
	return n, nil
}

// Seek implements io.Seeker.
func (o *Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.info.Size
	default:
		return 0, errors.New("artifacts: seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("artifacts: seek: negative position")
	}
	o.off = offset
	return offset, nil
}

// ReadAt implements io.ReaderAt with one ranged GET.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.info.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), o.info.Size-off)
	if want == 0 {
		return 0, nil
	}
	b, err := o.get(off, off+want-1)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	n, err := io.ReadFull(b, p[:want])
	if err != nil {
		return n, fmt.Errorf("reading %s at %d: %w", o.loc, off, err)
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// Close implements io.Closer.
func (o *Object) Close() error {
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}

// DeleteJob removes every artifact of a build job, all attempts.
func (s *Store) DeleteJob(ctx context.Context, jobID string) error {
	if s == nil {
		return nil
	}
	prefix := s.loc.Prefix + "jobs/" + jobID + "/"
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: aws.String(s.loc.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing %s: %w", s.loc.URL(prefix), err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []s3types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := s.c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.loc.Bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			return fmt.Errorf("deleting %s: %w", s.loc.URL(prefix), err)
		}
	}
	return nil
}

// Fetch copies the artifact at location into the local file path (for the
// cloud uploaders, which read local files), checking its sha256 when one is
// given.
func (s *Store) Fetch(ctx context.Context, location, path, sha256 string) error {
	r, err := s.Open(ctx, location)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	v := NewVerifier(r, r.Size(), sha256)
	if _, err := io.Copy(f, v); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("fetching %s: %w", location, err)
	}
	return f.Close()
}
