package gcp

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/kib-project/kib/internal/upload"
)

// Object metadata: the image's digest (an object with the same digest and
// size is not uploaded again) and the image name, as composer records it.
const (
	metaSHA256    = "kib-sha256"
	metaImageName = "kib-image-name"
)

// chunkSize is the resumable upload's chunk (a multiple of 256 KiB, as the
// protocol wants): a cut costs at most the part of one chunk the server has
// not persisted.
const chunkSize = 16 << 20

func (u *Uploader) storageClient(ctx context.Context, authOpt option.ClientOption) (*storage.Client, error) {
	opts := []option.ClientOption{authOpt}
	if u.cfg.StorageEndpoint != "" {
		opts = append(opts, option.WithEndpoint(u.cfg.StorageEndpoint))
	}
	return storage.NewClient(ctx, opts...)
}

// uploadObject uploads the tarball in a resumable session (resumable.go),
// unless the object is already there from an earlier try with the same
// digest. The object's MD5 is declared when the session opens, so the
// server refuses an object whose bytes differ, and checked again in the
// object it answers with.
func (u *Uploader) uploadObject(ctx context.Context, creds *auth.Credentials, a upload.Artifact, bucket, object, imageName string, progress upload.Progress) error {
	sc, err := u.storageClient(ctx, option.WithAuthCredentials(creds))
	if err != nil {
		return err
	}
	defer sc.Close()
	f, err := os.Open(a.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	obj := sc.Bucket(bucket).Object(object)
	if a.SHA256 != "" {
		attrs, err := obj.Attrs(ctx)
		switch {
		case err == nil && attrs.Size == fi.Size() && attrs.Metadata[metaSHA256] == a.SHA256:
			u.cfg.Logger.Info("gcp: the staging object is already uploaded", "bucket", bucket, "object", object)
			if progress != nil {
				progress(fi.Size(), fi.Size())
			}
			return nil
		case err == nil, errors.Is(err, storage.ErrObjectNotExist):
		default:
			return fmt.Errorf("reading the object's attributes: %w", err)
		}
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		return fmt.Errorf("reading %s: %w", a.Path, err)
	}
	sum := base64.StdEncoding.EncodeToString(h.Sum(nil))
	base, err := uploadBase(u.cfg.StorageEndpoint)
	if err != nil {
		return err
	}
	r := &resumable{
		client: u.httpClient(), token: creds, base: base, chunk: u.chunk, tries: 10,
		backoff: 200 * time.Millisecond, log: u.cfg.Logger,
	}
	if r.chunk == 0 {
		r.chunk = chunkSize
	}
	meta := map[string]string{metaImageName: imageName}
	if a.SHA256 != "" {
		meta[metaSHA256] = a.SHA256
	}
	session, err := r.start(ctx, bucket, objectResource{Name: object, ContentType: "application/gzip", Metadata: meta, MD5Hash: sum}, fi.Size())
	if err != nil {
		return err
	}
	res, err := r.upload(ctx, session, f, fi.Size(), progress)
	if err != nil {
		r.cancel(ctx, session)
		return err
	}
	if res.MD5Hash != "" && res.MD5Hash != sum {
		return fmt.Errorf("the uploaded object's MD5 is %s, the image's %s", res.MD5Hash, sum)
	}
	if res.Size != "" && res.Size != strconv.FormatInt(fi.Size(), 10) {
		return fmt.Errorf("the uploaded object has %s bytes, the image %d", res.Size, fi.Size())
	}
	if progress != nil {
		progress(fi.Size(), fi.Size())
	}
	return nil
}

// httpClient is the client of resumable uploads: it does not follow
// redirects (a 308 is the protocol's "resume incomplete").
func (u *Uploader) httpClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (u *Uploader) deleteObject(ctx context.Context, authOpt option.ClientOption, bucket, object string) error {
	sc, err := u.storageClient(ctx, authOpt)
	if err != nil {
		return err
	}
	defer sc.Close()
	return sc.Bucket(bucket).Object(object).Delete(ctx)
}
