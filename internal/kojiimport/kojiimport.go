// Package kojiimport imports locally built images into Koji as a Content
// Generator build: reserve the NVR, upload the image, manifest, SBOMs and
// logs, import them with kib's metadata, and refund the reservation when
// anything fails. Both `kib koji import` and the compose service's Koji jobs
// use it.
package kojiimport

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojimeta"
)

// Image is one locally built image and the files beside it.
type Image struct {
	Info     *kojimeta.BuildInfo
	Path     string
	Manifest string
	SBOMs    []string
	Logs     []string
	// UploadTargetResults are the image's cloud uploads, for its Koji
	// metadata.
	UploadTargetResults []kojimeta.UploadTargetResult
}

// ReadImage reads the image at path (the image file, or the directory the
// local build wrote it into) with its build-info.json, manifest, SBOMs and
// build log (<file>.build.log).
func ReadImage(path string) (*Image, error) {
	dir := path
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	bi, err := kojimeta.ReadBuildInfo(filepath.Join(dir, "build-info.json"))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	im := &Image{Info: bi, Path: filepath.Join(dir, bi.ExportFilename)}
	if !st.IsDir() && filepath.Base(path) != bi.ExportFilename {
		return nil, fmt.Errorf("image %s: build-info.json in %s describes %s", path, dir, bi.ExportFilename)
	}
	ist, err := os.Stat(im.Path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	if ist.Size() != bi.Size {
		return nil, fmt.Errorf("image %s: size %d differs from build-info.json size %d", im.Path, ist.Size(), bi.Size)
	}
	im.Manifest = im.Path + ".manifest.json"
	if _, err := os.Stat(im.Manifest); err != nil {
		return nil, fmt.Errorf("image %s: manifest %s is missing", path, im.Manifest)
	}
	if im.SBOMs, err = sbomsBeside(im.Path); err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	// kib build writes its log beside the image; it becomes the build's
	// log on the hub (getBuildLogs).
	if l := im.Path + ".build.log"; fileExists(l) {
		im.Logs = append(im.Logs, l)
	}
	return im, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// sbomsBeside lists the SBOMs written beside image, <image>.*.spdx.json,
// sorted. The directory is read rather than globbed, so that a path with
// glob characters ("[", "*") finds its SBOMs too.
func sbomsBeside(image string) ([]string, error) {
	dir, base := filepath.Split(image)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing SBOMs: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && len(n) > len(base)+len(".spdx.json")+1 && strings.HasPrefix(n, base+".") && strings.HasSuffix(n, ".spdx.json") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// Importer talks to one hub as content generator CG.
type Importer struct {
	Client *koji.Client
	// CG is the content generator's name on the hub (e.g. "kib").
	CG string
	// UploadDir is the prefix of the unique upload directories; empty means
	// "kib-cg".
	UploadDir string
	// Progress, if set, is told about uploads; it may be called concurrently.
	Progress func(koji.UploadProgress)
	// Open, if set, opens the images' files, which are then streamed into
	// the hub's chunked upload (e.g. from an artifact store); default:
	// local files.
	Open func(ctx context.Context, path string) (File, error)
}

// File is an image's file as Importer.Open returns it.
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Reserve reserves nvr (CGInitBuild).
func (im *Importer) Reserve(ctx context.Context, nvr koji.NVR) (*koji.Reservation, error) {
	r, err := im.Client.CGInitBuild(ctx, im.CG, nvr)
	if err != nil {
		return nil, fmt.Errorf("reserving %s-%s-%s: %w", nvr.Name, nvr.Version, nvr.Release, err)
	}
	return r, nil
}

// Reclaim cancels a reservation of nvr whose CGInitBuild answer (and so its
// token) was lost: the build must be BUILDING, reserved by this content
// generator, owned by this session's user and belong to no task, exactly
// what a lost CGInitBuild leaves. inUse reports whether kib holds the token
// of a build id elsewhere (another compose's reservation of the same NVR),
// which is never canceled. It returns the canceled build's id, 0 when there
// was nothing to reclaim. The hub recycles the canceled build (same id) at
// the next CGInitBuild.
func (im *Importer) Reclaim(ctx context.Context, nvr koji.NVR, inUse func(buildID int64) (bool, error)) (int64, error) {
	var b *koji.Build
	if err := im.Client.CallInto(ctx, &b, "getBuild", nvr.Name+"-"+nvr.Version+"-"+nvr.Release); err != nil {
		return 0, fmt.Errorf("looking up %s-%s-%s: %w", nvr.Name, nvr.Version, nvr.Release, err)
	}
	if b == nil || b.State != koji.BuildBuilding || b.CGName == nil || *b.CGName != im.CG || b.TaskID != nil {
		return 0, nil
	}
	user, err := im.Client.LoggedInUser(ctx)
	if err != nil {
		return 0, err
	}
	if b.OwnerName != user {
		return 0, nil
	}
	if used, err := inUse(b.ID); err != nil || used {
		return 0, err
	}
	ok, err := im.Client.CancelBuild(ctx, b.ID)
	if err != nil {
		return 0, fmt.Errorf("canceling build %d: %w", b.ID, err)
	}
	if !ok {
		return 0, nil
	}
	return b.ID, nil
}

// Refund gives a reservation back, marking the build failed.
func (im *Importer) Refund(ctx context.Context, buildID int64, token string) error {
	if err := im.Client.CGRefundBuild(ctx, im.CG, buildID, token, koji.BuildFailed); err != nil {
		return fmt.Errorf("refunding build %d: %w", buildID, err)
	}
	return nil
}

// Build is what Import imports.
type Build struct {
	NVR koji.NVR
	// BuildID and Token are the reservation; Token "" imports without one.
	BuildID int64
	Token   string
	// TaskID is the Koji task the build belongs to, 0 if none.
	TaskID     int64
	Start, End time.Time
	Images     []*Image
	// UploadDir, if set, is the upload directory to use; else a unique one
	// under the Importer's prefix.
	UploadDir string
}

// Import uploads the images' files and imports the build (CGImport). It
// does not refund on failure; the caller owns the reservation.
func (im *Importer) Import(ctx context.Context, b Build) (*koji.Build, error) {
	infos := make([]kojimeta.BuildInfo, len(b.Images))
	for i, img := range b.Images {
		infos[i] = *img.Info
	}
	names, err := kojimeta.ImageFilenames(b.NVR.Name, b.NVR.Version, b.NVR.Release, infos)
	if err != nil {
		return nil, err
	}
	dir := b.UploadDir
	if dir == "" {
		prefix := im.UploadDir
		if prefix == "" {
			prefix = "kib-cg"
		}
		dir = koji.UniqueUploadDir(prefix)
	}
	// Files beside an image are named after it (root.tar.xz.manifest.json);
	// on the hub they are named after the image's Koji name the same way.
	suffix := func(img *Image, file string) string {
		base := filepath.Base(file)
		if s, ok := strings.CutPrefix(base, filepath.Base(img.Path)); ok {
			return s
		}
		return "." + base
	}
	var files []koji.UploadFile
	for i, img := range b.Images {
		// The digests from build-info.json spare hashing on the client;
		// CGImport has the hub verify them against the uploaded bytes.
		files = append(files, koji.UploadFile{Path: img.Path, Name: names[i], SHA256: img.Info.SHA256},
			koji.UploadFile{Path: img.Manifest, Name: names[i] + ".manifest.json", SHA256: img.Info.ManifestSHA256})
		for _, s := range img.SBOMs {
			files = append(files, koji.UploadFile{Path: s, Name: names[i] + suffix(img, s)})
		}
		for _, l := range img.Logs {
			files = append(files, koji.UploadFile{Path: l, Name: names[i] + suffix(img, l)})
		}
	}
	if im.Open != nil {
		for i := range files {
			f, err := im.Open(ctx, files[i].Path)
			if err != nil {
				return nil, fmt.Errorf("opening %s: %w", files[i].Path, err)
			}
			defer f.Close()
			files[i].Source, files[i].Size = f, f.Size()
		}
	}
	uploaded, err := im.Client.UploadFiles(ctx, dir, files, im.Progress)
	if err != nil {
		return nil, fmt.Errorf("uploading to %s: %w", dir, err)
	}
	byName := map[string]kojimeta.File{}
	for _, u := range uploaded {
		byName[u.Name] = kojimeta.File{Filename: u.Name, Size: u.Size, SHA256: u.SHA256}
	}
	in := kojimeta.Input{Name: b.NVR.Name, Version: b.NVR.Version, Release: b.NVR.Release, BuildID: b.BuildID,
		TaskID: b.TaskID, Start: b.Start, End: b.End, HostOS: HostOS(), HostArch: HostArch()}
	in.Defaults()
	for i, img := range b.Images {
		mf := byName[names[i]+".manifest.json"]
		ki := kojimeta.Image{Info: *img.Info, Image: byName[names[i]], Manifest: &mf, UploadTargetResults: img.UploadTargetResults}
		for _, s := range img.SBOMs {
			ki.SBOMs = append(ki.SBOMs, byName[names[i]+suffix(img, s)])
		}
		for _, l := range img.Logs {
			ki.Logs = append(ki.Logs, byName[names[i]+suffix(img, l)])
		}
		in.Images = append(in.Images, ki)
	}
	meta, err := kojimeta.BuildMetadata(in)
	if err != nil {
		return nil, err
	}
	kb, err := im.Client.CGImport(ctx, meta, dir, b.Token)
	if err != nil {
		return nil, fmt.Errorf("importing %s-%s-%s: %w", b.NVR.Name, b.NVR.Version, b.NVR.Release, err)
	}
	return kb, nil
}

// HostOS returns "<ID>-<VERSION_ID>" from /etc/os-release (e.g.
// "debian-12"), or the Go OS name.
func HostOS() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = strings.Trim(v, `"'`)
		}
	}
	switch {
	case vals["ID"] == "":
		return runtime.GOOS
	case vals["VERSION_ID"] == "":
		return vals["ID"]
	}
	return vals["ID"] + "-" + vals["VERSION_ID"]
}

var goArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

// HostArch returns the machine's architecture in Koji's words (x86_64).
func HostArch() string {
	if a := goArch[runtime.GOARCH]; a != "" {
		return a
	}
	return runtime.GOARCH
}
