package gcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

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

// chunkSize is the resumable upload's chunk: each is retried on its own
// when the connection drops.
const chunkSize = 16 << 20

func (u *Uploader) storageClient(ctx context.Context, authOpt option.ClientOption) (*storage.Client, error) {
	opts := []option.ClientOption{authOpt}
	if u.cfg.StorageEndpoint != "" {
		opts = append(opts, option.WithEndpoint(u.cfg.StorageEndpoint))
	}
	return storage.NewClient(ctx, opts...)
}

// uploadObject uploads the tarball as a resumable upload, unless the
// object is already there from an earlier try with the same digest.
func (u *Uploader) uploadObject(ctx context.Context, authOpt option.ClientOption, a upload.Artifact, bucket, object, imageName string, progress upload.Progress) error {
	sc, err := u.storageClient(ctx, authOpt)
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
	// Cancelling the writer's context aborts the upload (no partial object).
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(wctx)
	w.ChunkSize = chunkSize
	w.ContentType = "application/gzip"
	w.Metadata = map[string]string{metaImageName: imageName}
	if a.SHA256 != "" {
		w.Metadata[metaSHA256] = a.SHA256
	}
	if progress != nil {
		size := fi.Size()
		w.ProgressFunc = func(n int64) { progress(n, size) }
	}
	if _, err := io.Copy(w, f); err != nil {
		cancel()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if progress != nil {
		progress(fi.Size(), fi.Size())
	}
	return nil
}

func (u *Uploader) deleteObject(ctx context.Context, authOpt option.ClientOption, bucket, object string) error {
	sc, err := u.storageClient(ctx, authOpt)
	if err != nil {
		return err
	}
	defer sc.Close()
	return sc.Bucket(bucket).Object(object).Delete(ctx)
}
