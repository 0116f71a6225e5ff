package awss3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kib-project/kib/internal/upload"
)

const (
	defaultPartSize = 16 << 20
	minPartSize     = 5 << 20
	maxParts        = 10000
)

// state is what is kept on disk of an unfinished multipart upload.
type state struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	PartSize int64  `json:"part_size"`
	UploadID string `json:"upload_id"`
}

// PartSize is the part size used for an object of size bytes.
func (u *Uploader) PartSize(size int64) int64 {
	ps := u.cfg.PartSize
	if ps <= 0 {
		ps = defaultPartSize
	}
	ps = max(ps, minPartSize)
	if need := (size + maxParts - 1) / maxParts; need > ps {
		ps = need
	}
	return ps
}

func (u *Uploader) statePath(key string) (string, error) {
	dir := u.cfg.StateDir
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("aws.s3: no state directory for resumable uploads: %w", err)
		}
		dir = filepath.Join(c, "kib", "uploads")
	}
	h := sha256.Sum256([]byte(u.cfg.Endpoint + "\x00" + u.cfg.Bucket + "\x00" + key))
	return filepath.Join(dir, "s3-"+hex.EncodeToString(h[:12])+".json"), nil
}

// Put uploads the artifact to key as a multipart upload of parallel parts.
// An upload cut by an error or a crash leaves its state in StateDir; the
// next Put of the same artifact to the same key lists the parts the store
// already has (ListParts) and sends only the others. The object carries the
// image's sha256 as metadata (x-amz-meta-sha256); an object that already
// has it is not sent again.
func (u *Uploader) Put(ctx context.Context, c *s3.Client, a upload.Artifact, key string, public bool, progress upload.Progress) error {
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("aws.s3: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("aws.s3: %w", err)
	}
	size := st.Size()
	if a.Size != 0 && a.Size != size {
		return fmt.Errorf("aws.s3: %s is %d bytes, its build-info.json says %d", a.Path, size, a.Size)
	}
	where := "s3://" + u.cfg.Bucket + "/" + key
	bucket := aws.String(u.cfg.Bucket)

	if a.SHA256 != "" {
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(key)})
		if err == nil && h.Metadata["sha256"] == a.SHA256 && aws.ToInt64(h.ContentLength) == size {
			if progress != nil {
				progress(size, size)
			}
			return nil
		}
	}

	sp, err := u.statePath(key)
	if err != nil {
		return err
	}
	want := state{Endpoint: u.cfg.Endpoint, Bucket: u.cfg.Bucket, Key: key, SHA256: a.SHA256, Size: size, PartSize: u.PartSize(size)}
	done := map[int32]string{}
	s, ok := readState(sp)
	if ok && a.SHA256 != "" && s.UploadID != "" && s == (state{want.Endpoint, want.Bucket, want.Key, want.SHA256, want.Size, want.PartSize, s.UploadID}) {
		done, err = listParts(ctx, c, s, size)
		if err != nil {
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != "NoSuchUpload" {
				return fmt.Errorf("resuming upload to %s: %w", where, err)
			}
			ok = false // the store dropped it: start again
		}
		want.UploadID = s.UploadID
	} else {
		ok = false
	}
	if !ok {
		in := &s3.CreateMultipartUploadInput{
			Bucket: bucket, Key: aws.String(key), ContentType: aws.String("application/octet-stream"),
		}
		if a.SHA256 != "" {
			in.Metadata = map[string]string{"sha256": a.SHA256}
		}
		if public {
			in.ACL = types.ObjectCannedACLPublicRead
		}
		out, err := c.CreateMultipartUpload(ctx, in)
		if err != nil {
			return fmt.Errorf("starting upload to %s: %w", where, err)
		}
		want.UploadID = aws.ToString(out.UploadId)
		done = map[int32]string{}
		if a.SHA256 != "" {
			if err := writeState(sp, want); err != nil {
				return err
			}
		}
	}

	n := int32(max(1, (size+want.PartSize-1)/want.PartSize))
	var (
		mu   sync.Mutex
		sent int64
	)
	for p := range done {
		sent += partLen(p, want.PartSize, size)
	}
	if progress != nil {
		progress(sent, size)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	todo := make(chan int32)
	var wg sync.WaitGroup
	workers := u.cfg.Concurrency
	if workers <= 0 {
		workers = 8
	}
	for range min(workers, int(n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range todo {
				l := partLen(p, want.PartSize, size)
				out, err := c.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: bucket, Key: aws.String(key), UploadId: aws.String(want.UploadID),
					PartNumber: aws.Int32(p), ContentLength: aws.Int64(l),
					Body: io.NewSectionReader(f, int64(p-1)*want.PartSize, l),
				})
				if err != nil {
					cancel(fmt.Errorf("uploading part %d of %d to %s: %w", p, n, where, err))
					continue
				}
				mu.Lock()
				done[p] = aws.ToString(out.ETag)
				sent += l
				if progress != nil {
					progress(sent, size)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for p := int32(1); p <= n; p++ {
		if _, ok := done[p]; ok {
			continue
		}
		select {
		case todo <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		// The upload stays open with its parts, for the next attempt.
		return err
	}
	parts := make([]types.CompletedPart, 0, len(done))
	for p, etag := range done {
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(p), ETag: aws.String(etag)})
	}
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: bucket, Key: aws.String(key), UploadId: aws.String(want.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return fmt.Errorf("completing upload to %s: %w", where, err)
	}
	_ = os.Remove(sp)
	return nil
}

func partLen(p int32, partSize, size int64) int64 {
	off := int64(p-1) * partSize
	return min(partSize, size-off)
}

// listParts returns the parts of s the store has, with their ETags; parts
// whose size is not the expected one are left out (sent again).
func listParts(ctx context.Context, c *s3.Client, s state, size int64) (map[int32]string, error) {
	done := map[int32]string{}
	var marker *string
	for {
		out, err := c.ListParts(ctx, &s3.ListPartsInput{
			Bucket: aws.String(s.Bucket), Key: aws.String(s.Key), UploadId: aws.String(s.UploadID), PartNumberMarker: marker,
		})
		if err != nil {
			return nil, err
		}
		for _, p := range out.Parts {
			n := aws.ToInt32(p.PartNumber)
			if n >= 1 && int64(n-1)*s.PartSize < size && aws.ToInt64(p.Size) == partLen(n, s.PartSize, size) {
				done[n] = aws.ToString(p.ETag)
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			return done, nil
		}
		marker = out.NextPartNumberMarker
	}
}

func readState(path string) (state, bool) {
	var s state
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, true
}

func writeState(path string, s state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("aws.s3: saving upload state: %w", err)
	}
	b, _ := json.Marshal(s)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("aws.s3: saving upload state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("aws.s3: saving upload state: %w", err)
	}
	return nil
}
