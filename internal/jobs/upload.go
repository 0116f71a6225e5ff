package jobs

import (
	"context"
	"fmt"
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
	art := upload.Artifact{
		Path: img.Path, Filename: name, ImageType: a.Image.ImageType, Arch: a.Image.Arch,
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
