package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojiimport"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/upload"
)

// KojiHub is the KojiImporter for one Koji hub: it reserves, imports and
// refunds builds there as a Content Generator, with package kojiimport.
type KojiHub struct {
	// Server is the hub URL; composes naming another server are refused.
	Server string
	// CG is the content generator's name on the hub; empty means "kib".
	CG string
	// Connect returns a logged-in client of the hub. A new session is made
	// for each step, so an expired session never fails a long compose.
	Connect func(ctx context.Context) (*koji.Client, error)
	// Artifacts, if set, is the artifact store the images' files may be
	// in; they are streamed from it into the hub's chunked upload.
	Artifacts *artifacts.Store
}

var _ KojiImporter = (*KojiHub)(nil)

// ErrKojiServer reports a compose that names a hub this service does not
// import into.
var ErrKojiServer = errors.New("koji server not configured")

func (h *KojiHub) importer(ctx context.Context, server string) (*kojiimport.Importer, func(), error) {
	if strings.TrimRight(server, "/") != strings.TrimRight(h.Server, "/") {
		return nil, nil, fmt.Errorf("koji.server %q: %w (this service imports into %s)", server, ErrKojiServer, h.Server)
	}
	c, err := h.Connect(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", h.Server, err)
	}
	cg := h.CG
	if cg == "" {
		cg = kojimeta.CGName
	}
	done := func() { _ = c.Logout(context.WithoutCancel(ctx)) }
	im := &kojiimport.Importer{Client: c, CG: cg}
	if h.Artifacts != nil {
		im.Open = func(ctx context.Context, path string) (kojiimport.File, error) {
			r, err := h.Artifacts.Open(ctx, path)
			if err != nil {
				return nil, err
			}
			return r, nil
		}
	}
	return im, done, nil
}

// Init reserves the build (CGInitBuild).
func (h *KojiHub) Init(ctx context.Context, a *KojiInitArgs) (*KojiInitResult, error) {
	im, done, err := h.importer(ctx, a.Server)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := im.Reserve(ctx, koji.NVR{Name: a.Name, Version: a.Version, Release: a.Release})
	if err != nil {
		return nil, err
	}
	return &KojiInitResult{BuildID: uint64(r.BuildID), Token: r.Token}, nil
}

// Reclaim cancels a reservation of a.NVR whose CGInitBuild answer was lost
// (kojiimport.Importer.Reclaim).
func (h *KojiHub) Reclaim(ctx context.Context, a *KojiInitArgs, inUse func(buildID uint64) (bool, error)) (uint64, error) {
	im, done, err := h.importer(ctx, a.Server)
	if err != nil {
		return 0, err
	}
	defer done()
	id, err := im.Reclaim(ctx, koji.NVR{Name: a.Name, Version: a.Version, Release: a.Release}, func(id int64) (bool, error) { return inUse(uint64(id)) })
	return uint64(id), err
}

// Finalize uploads every image's files and imports the build (CGImport).
func (h *KojiHub) Finalize(ctx context.Context, a *KojiFinalizeArgs) error {
	if a.BuildID > math.MaxInt64 {
		return fmt.Errorf("koji build id %d out of range", a.BuildID)
	}
	var images []*kojiimport.Image
	for i, ki := range a.Images {
		img := &kojiimport.Image{}
		var info, infoSum string
		for _, art := range ki.Artifacts {
			switch art.Kind {
			case "image":
				img.Path = art.Path
			case "manifest":
				img.Manifest = art.Path
			case "sbom":
				img.SBOMs = append(img.SBOMs, art.Path)
			case "log":
				img.Logs = append(img.Logs, art.Path)
			case "info":
				info, infoSum = art.Path, art.SHA256
			}
		}
		if img.Path == "" || img.Manifest == "" || info == "" {
			return fmt.Errorf("images[%d] (%s %s): image, manifest and build-info.json artifacts are required", i, ki.Arch, ki.ImageType)
		}
		bi, err := h.readBuildInfo(ctx, info, infoSum)
		if err != nil {
			return fmt.Errorf("images[%d]: %w", i, err)
		}
		img.Info = bi
		for _, u := range ki.Uploads {
			img.UploadTargetResults = append(img.UploadTargetResults, kojimeta.UploadTargetResult{
				Name: upload.OSBuildTargetName(u.Type), Options: u.Options,
				OSBuildArtifact: &kojimeta.OSBuildArtifact{ExportFilename: bi.ExportFilename, ExportName: bi.ExportName},
			})
		}
		images = append(images, img)
	}
	im, done, err := h.importer(ctx, a.Server)
	if err != nil {
		return err
	}
	defer done()
	_, err = im.Import(ctx, kojiimport.Build{
		NVR:     koji.NVR{Name: a.Name, Version: a.Version, Release: a.Release},
		BuildID: int64(a.BuildID), Token: a.Token, TaskID: a.TaskID,
		Start: a.StartTime, End: a.EndTime, Images: images, UploadDir: a.Directory,
	})
	if err != nil && ctx.Err() == nil {
		// An earlier attempt (or this one, whose answer was lost) may have
		// imported the build: then it is done, and must not be refunded.
		if b, gerr := im.Client.GetBuild(ctx, int64(a.BuildID)); gerr == nil && b != nil && b.State == koji.BuildComplete {
			return nil
		}
	}
	return err
}

// Refund gives the reservation back (CGRefundBuild).
func (h *KojiHub) Refund(ctx context.Context, a *KojiRefundArgs) error {
	if a.BuildID > math.MaxInt64 {
		return fmt.Errorf("koji build id %d out of range", a.BuildID)
	}
	im, done, err := h.importer(ctx, a.Server)
	if err != nil {
		return err
	}
	defer done()
	err = im.Refund(ctx, int64(a.BuildID), a.Token)
	if err == nil || ctx.Err() != nil {
		return err
	}
	// CGRefundBuild is idempotent only while the token is valid: the hub
	// drops the reservation with the first refund, so a retry after a lost
	// answer fails. The build's state tells what happened.
	b, gerr := im.Client.GetBuild(ctx, int64(a.BuildID))
	if gerr != nil || b == nil {
		return err
	}
	switch b.State {
	case koji.BuildFailed, koji.BuildCanceled:
		return nil
	case koji.BuildComplete, koji.BuildDeleted:
		return fmt.Errorf("%w: build %d is %s on the hub: %w", ErrNotRefundable, a.BuildID, map[int]string{koji.BuildComplete: "complete", koji.BuildDeleted: "deleted"}[b.State], err)
	}
	return err
}

// readBuildInfo reads an image's build-info.json, from the artifact store
// if it is there.
func (h *KojiHub) readBuildInfo(ctx context.Context, path, sha256 string) (*kojimeta.BuildInfo, error) {
	if !h.Artifacts.Owns(path) {
		return kojimeta.ReadBuildInfo(path)
	}
	tmp, err := os.CreateTemp("", "kib-build-info-*.json")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := h.Artifacts.Fetch(ctx, path, tmp.Name(), sha256); err != nil {
		return nil, err
	}
	return kojimeta.ReadBuildInfo(tmp.Name())
}
