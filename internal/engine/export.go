package engine

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

	"golang.org/x/sys/unix"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/sbom"
	"github.com/kib-project/kib/internal/version"
)

// SBOMSuffix is appended to an image's file name to name its SBOM, as
// osbuild-composer names them in Koji (<image>.<purpose>-<pipeline>.spdx.json).
const SBOMSuffix = ".image-os.spdx.json"

// ManifestSuffix is appended to an image's file name to name its manifest.
const ManifestSuffix = ".manifest.json"

// export copies the exported file out of the store into
// outDir/<export>/<file> and writes the manifest, SBOM and build info beside
// it. Every file is written under a temporary name and renamed when complete.
func (e *Engine) export(ctx context.Context, m *manifest.Manifest, ex manifest.Export, srcDir, outDir string) (Artifact, error) {
	dir := filepath.Join(outDir, ex.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Artifact{}, err
	}
	a := Artifact{Export: ex, Path: filepath.Join(dir, ex.Filename)}
	sum, size, err := copyFile(ctx, filepath.Join(srcDir, ex.Filename), a.Path)
	if err != nil {
		return Artifact{}, err
	}
	a.SHA256, a.Size = sum, size
	canon, err := m.Canonical()
	if err != nil {
		return Artifact{}, err
	}
	a.Manifest = a.Path + ManifestSuffix
	// No trailing newline: the file's sha256 is the manifest's digest
	// (build-info.json's manifest_sha256), which imports rely on.
	if err := writeAtomic(a.Manifest, canon); err != nil {
		return Artifact{}, err
	}
	doc, err := sbom.ForImage(m, ex.Filename)
	if err != nil {
		return Artifact{}, err
	}
	sb, err := sbom.Marshal(doc)
	if err != nil {
		return Artifact{}, err
	}
	a.SBOM = a.Path + SBOMSuffix
	if err := writeAtomic(a.SBOM, sb); err != nil {
		return Artifact{}, err
	}
	msum := sha256.Sum256(canon)
	info := buildinfo.BuildInfo{
		Arch: m.Arch, BootMode: ex.BootMode, ExportName: ex.Name, ExportFilename: ex.Filename,
		KibVersion: version.String(), SHA256: a.SHA256, Size: a.Size, Distro: m.Distro,
		ImageType: m.ImageType, ManifestSHA256: hex.EncodeToString(msum[:]),
	}
	for _, d := range m.Sources.Debs {
		info.Packages = append(info.Packages, buildinfo.Package{Name: d.Name, Version: d.Version, Arch: d.Arch, SHA256: d.SHA256})
	}
	for _, d := range m.Sources.BuildDebs {
		info.BuildRoot = append(info.BuildRoot, buildinfo.Package{Name: d.Name, Version: d.Version, Arch: d.Arch, SHA256: d.SHA256, Size: d.Size})
	}
	ib, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return Artifact{}, err
	}
	a.Info = filepath.Join(dir, "build-info.json")
	if err := writeAtomic(a.Info, append(ib, '\n')); err != nil {
		return Artifact{}, err
	}
	return a, nil
}

func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), ".kib-tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// copyFile copies src to dst (through a temporary name), keeping holes, and
// returns the sha256 and size of the content.
func copyFile(ctx context.Context, src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", 0, err
	}
	tmp := filepath.Join(filepath.Dir(dst), ".kib-tmp-"+filepath.Base(dst))
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", 0, err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	if err := copySparse(ctx, in, out, st.Size(), h); err != nil {
		return "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", 0, err
	}
	ok = true
	return hex.EncodeToString(h.Sum(nil)), st.Size(), nil
}

var zeros = make([]byte, 1<<20)

// copySparse copies the data regions of in to out, leaving holes as holes,
// and feeds every byte (holes as zeros) to h. Hashing runs on a goroutine of
// its own, a few buffers behind the copy: hashing a 4 GiB image takes
// seconds, and the copy's reads and writes need not wait for it.
func copySparse(ctx context.Context, in, out *os.File, size int64, h io.Writer) error {
	const bufs, bufSize = 4, 4 << 20
	type chunk struct {
		b      []byte
		pooled bool
	}
	free := make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, bufSize)
	}
	work := make(chan chunk, bufs)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for c := range work {
			h.Write(c.b)
			if c.pooled {
				free <- c.b[:cap(c.b)]
			}
		}
	}()
	defer func() {
		close(work)
		<-hashed
	}()
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // only a hole remains
				data = size
			} else {
				data = off // no SEEK_DATA support: copy everything
			}
		}
		for off < data {
			n := min(int64(len(zeros)), data-off)
			work <- chunk{b: zeros[:n]}
			off += n
		}
		if off >= size {
			break
		}
		hole, err := unix.Seek(int(in.Fd()), off, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for off < hole {
			buf := <-free
			n := min(int64(len(buf)), hole-off)
			r, err := in.ReadAt(buf[:n], off)
			if r > 0 {
				if _, err := out.WriteAt(buf[:r], off); err != nil {
					free <- buf
					return err
				}
				work <- chunk{b: buf[:r], pooled: true}
				off += int64(r)
			} else {
				free <- buf
			}
			if err != nil && !(errors.Is(err, io.EOF) && r > 0) {
				return fmt.Errorf("reading %s: %w", in.Name(), err)
			}
		}
	}
	return out.Truncate(size)
}
