package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kib-project/kib/internal/upload"
)

// upload sends a build's image to one cloud target and returns the
// target's result options. Its error is the cloud's message, wrapped with
// what kib was doing.
func (q *Queue) upload(ctx context.Context, j *jobRow, a *buildArgs, res *BuildResult, t UploadTarget) (map[string]any, error) {
	up, err := q.cfg.Uploaders.For(t.Type)
	if err != nil {
		return nil, err
	}
	var img *Artifact
	for i := range res.Artifacts {
		if res.Artifacts[i].Kind == "image" {
			img = &res.Artifacts[i]
			break
		}
	}
	if img == nil {
		return nil, fmt.Errorf("%s: the build produced no image", t.Type)
	}
	name := a.KojiFilename
	if name == "" {
		name = a.Image.Filename
	}
	path, done, err := q.localImage(ctx, img, q.ArtifactDir(j.ID))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Type, err)
	}
	defer done()
	art := upload.Artifact{
		Path: path, Filename: name, ImageType: a.Image.ImageType, Arch: a.Image.Arch,
		BootMode: a.Image.BootMode, SHA256: img.SHA256, Size: img.Size,
	}
	log := q.log.With("job", j.ID, "target", t.Type)
	log.Info("upload started", "image", name, "size", img.Size)
	start := time.Now()
	var last time.Time
	r, err := up.Upload(ctx, art, t.Options, func(sent, total int64) {
		if time.Since(last) >= 10*time.Second || sent == total {
			last = time.Now()
			log.Info("uploading", "sent", sent, "total", total)
		}
	})
	if err != nil {
		log.Error("upload failed", "err", err)
		return nil, err
	}
	log.Info("upload finished", "seconds", time.Since(start).Seconds(), "result", r.Options)
	return r.Options, nil
}

// storeArtifacts puts a build's local artifacts into the artifact store and
// returns them with their store locations; those a remote worker stored
// already are kept as they are.
func (q *Queue) storeArtifacts(ctx context.Context, jobID string, arts []Artifact) ([]Artifact, error) {
	st := q.cfg.Artifacts
	dir := st.NewDir(jobID)
	out := make([]Artifact, 0, len(arts))
	for _, a := range arts {
		if !st.Owns(a.Path) {
			loc := dir + filepath.Base(a.Name)
			if err := st.Put(ctx, loc, a.Path, a.SHA256, a.Size); err != nil {
				return nil, fmt.Errorf("storing %s in %s: %w", a.Name, st.Location(), err)
			}
			a.Path = loc
		}
		out = append(out, a)
	}
	return out, nil
}

// localImage returns a local file of the image for the cloud uploaders: the
// image itself, or a copy fetched from the artifact store into dir (removed
// by the returned function).
func (q *Queue) localImage(ctx context.Context, img *Artifact, dir string) (string, func(), error) {
	if !q.cfg.Artifacts.Owns(img.Path) {
		return img.Path, func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, "fetched-"+filepath.Base(img.Name))
	if err := q.cfg.Artifacts.Fetch(ctx, img.Path, p, img.SHA256); err != nil {
		return "", nil, err
	}
	return p, func() { os.Remove(p) }, nil
}
