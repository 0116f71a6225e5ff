package reproduce

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojimeta"
)

// Hub is the part of a Koji hub that reproduce reads. *koji.Client has it;
// every call is an anonymous read.
type Hub interface {
	GetBuild(ctx context.Context, build any) (*koji.Build, error)
	ListArchives(ctx context.Context, buildID int64, btype string) ([]koji.Archive, error)
}

var _ Hub = (*koji.Client)(nil)

// Koji's CHECKSUM_TYPES: an archive's checksum_type.
const (
	checksumMD5    = 0
	checksumSHA256 = 2
)

// Target is the image of a Koji build to reproduce and the manifest beside it.
type Target struct {
	Build    *koji.Build
	Image    koji.Archive
	Manifest koji.Archive
	// ExportName and ExportFilename name the manifest's export that made
	// the image (extra.image.osbuild_artifact).
	ExportName, ExportFilename string
}

// BuildRef turns a command-line build argument into what getBuild takes: a
// build ID (all digits) or an NVR.
func BuildRef(s string) (any, error) {
	if s == "" {
		return nil, errors.New("build: give an NVR (name-version-release) or a build ID")
	}
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		if id <= 0 {
			return nil, fmt.Errorf("build ID %d: must be positive", id)
		}
		return id, nil
	}
	if strings.Count(s, "-") < 2 || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") || strings.Contains(s, "--") {
		return nil, fmt.Errorf("build %q: not a build ID and not an NVR (name-version-release)", s)
	}
	return s, nil
}

// Find looks the build up on the hub and picks its image: the only image
// with a kib manifest, or the one image names (its Koji file name, export
// name or export file name).
func Find(ctx context.Context, hub Hub, build, image string) (*Target, error) {
	ref, err := BuildRef(build)
	if err != nil {
		return nil, err
	}
	b, err := hub.GetBuild(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", build, err)
	}
	if b == nil {
		return nil, fmt.Errorf("build %s: no such build", build)
	}
	if b.State != 1 {
		return nil, fmt.Errorf("build %s: state %d is not COMPLETE (1); only complete builds have their files in Koji", b.NVR, b.State)
	}
	archives, err := hub.ListArchives(ctx, b.ID, "image")
	if err != nil {
		return nil, fmt.Errorf("build %s: listing archives: %w", b.NVR, err)
	}
	byName := map[string]koji.Archive{}
	for _, a := range archives {
		byName[a.Filename] = a
	}
	var candidates []Target
	var names []string
	for _, a := range archives {
		if strings.HasSuffix(a.Filename, engine.ManifestSuffix) {
			continue
		}
		mf, ok := byName[a.Filename+engine.ManifestSuffix]
		if !ok {
			continue
		}
		t := Target{Build: b, Image: a, Manifest: mf}
		t.ExportName, t.ExportFilename = artifact(a.Extra)
		candidates = append(candidates, t)
		names = append(names, a.Filename)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("build %s: no image with a manifest (<image>%s) among its %d image archives; was it built by kib?", b.NVR, engine.ManifestSuffix, len(archives))
	}
	if image == "" {
		if len(candidates) > 1 {
			return nil, fmt.Errorf("build %s has %d images, choose one with --image: %s", b.NVR, len(candidates), strings.Join(names, ", "))
		}
		return &candidates[0], nil
	}
	for i, t := range candidates {
		if image == t.Image.Filename || image == t.ExportName || image == t.ExportFilename {
			return &candidates[i], nil
		}
	}
	return nil, fmt.Errorf("--image %q: build %s has no such image (its images: %s)", image, b.NVR, strings.Join(names, ", "))
}

// artifact reads extra.image.osbuild_artifact of an image archive.
func artifact(extra map[string]any) (name, filename string) {
	img, _ := extra["image"].(map[string]any)
	art, _ := img["osbuild_artifact"].(map[string]any)
	name, _ = art["export_name"].(string)
	filename, _ = art["export_filename"].(string)
	return name, filename
}

// BuildDir is the build's directory below topurl, as Koji's PathInfo
// makes it: [vol/<volume>/]packages/<name>/<version>/<release>.
func BuildDir(b *koji.Build) string {
	dir := path.Join("packages", b.Name, b.Version, b.Release)
	if b.VolumeName != "" && b.VolumeName != "DEFAULT" {
		dir = path.Join("vol", b.VolumeName, dir)
	}
	return dir
}

// ArchivePath is where an archive lives below topurl: images/ for the
// image btype, files/<btype>/ for the others (Koji's PathInfo.typedir).
func ArchivePath(b *koji.Build, a koji.Archive) string {
	if a.BType == "image" {
		return path.Join(BuildDir(b), "images", a.Filename)
	}
	return path.Join(BuildDir(b), "files", a.BType, a.Filename)
}

// fileURL joins topurl and a path below it.
func fileURL(topurl, rel string) (string, error) {
	u, err := url.Parse(topurl)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("topurl %q: must be an http or https URL", topurl)
	}
	return u.JoinPath(rel).String(), nil
}

// ChecksumError reports a downloaded file whose digest is not the one
// the hub records for it.
type ChecksumError struct {
	URL       string
	Want, Got string
	// WantSize and GotSize are the recorded and downloaded sizes.
	WantSize, GotSize int64
}

func (e *ChecksumError) Error() string {
	if e.WantSize != e.GotSize {
		return fmt.Sprintf("%s: got %d bytes, the hub records %d", e.URL, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("%s: checksum %s, the hub records %s", e.URL, e.Got, e.Want)
}

// newArchiveHash returns the hash of an archive's checksum_type.
func newArchiveHash(a koji.Archive) (hash.Hash, error) {
	switch a.ChecksumType {
	case checksumSHA256:
		return sha256.New(), nil
	case checksumMD5:
		return md5.New(), nil
	}
	return nil, fmt.Errorf("archive %s: checksum_type %d is neither md5 (0) nor sha256 (2)", a.Filename, a.ChecksumType)
}

// download fetches topurl/rel into w and checks size and digest against
// the archive record. progress, if set, is told the bytes so far.
func download(ctx context.Context, client *http.Client, topurl, rel string, a koji.Archive, w io.Writer, progress func(done, total int64)) error {
	u, err := fileURL(topurl, rel)
	if err != nil {
		return err
	}
	h, err := newArchiveHash(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", a.Filename, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s: %s: %s", a.Filename, u, resp.Status)
	}
	// Never read more than the record says plus one byte: a longer file is
	// wrong whatever it holds.
	body := io.LimitReader(resp.Body, a.Size+1)
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			n += int64(k)
			if progress != nil {
				progress(n, a.Size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("downloading %s: %w", a.Filename, rerr)
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != a.Size || got != strings.ToLower(a.Checksum) {
		return &ChecksumError{URL: u, Want: a.Checksum, Got: got, WantSize: a.Size, GotSize: n}
	}
	return nil
}

// downloadFile downloads an archive into the file dest.
func downloadFile(ctx context.Context, client *http.Client, topurl, rel string, a koji.Archive, dest string, progress func(done, total int64)) error {
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	err = download(ctx, client, topurl, rel, a, f, progress)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dest)
	}
	return err
}

// buildMetadata fetches the CG metadata the hub keeps beside the build
// (metadata.json in the build directory). It returns nil, nil when the
// hub has none (a build that was not a CG import).
func buildMetadata(ctx context.Context, client *http.Client, topurl string, b *koji.Build) (*kojimeta.Metadata, error) {
	u, err := fileURL(topurl, path.Join(BuildDir(b), "metadata.json"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("build metadata: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, nil
	default:
		return nil, fmt.Errorf("build metadata: %s: %s", u, resp.Status)
	}
	var m kojimeta.Metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("build metadata %s: %w", u, err)
	}
	return &m, nil
}
