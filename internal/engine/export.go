package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/sbom"
	"github.com/kib-project/kib/internal/sparse"
	"github.com/kib-project/kib/internal/store"
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
	sum, size, err := e.copyOut(ctx, srcDir, ex.Filename, a.Path)
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

// copyOut copies the file name of a store object's output directory srcDir
// to dst and returns its sha256 and size. The object keeps the file's digest
// (taken as a stage wrote it, or by an earlier export) while the file keeps
// its size and time; else the copy hashes the file, and the object keeps
// the digest for the next export.
func (e *Engine) copyOut(ctx context.Context, srcDir, name, dst string) (string, int64, error) {
	src := filepath.Join(srcDir, name)
	fi, err := os.Stat(src)
	if err != nil {
		return "", 0, err
	}
	obj := filepath.Dir(srcDir)
	known, ok := store.Digests(obj)[name]
	ok = ok && known.Matches(fi)
	sum, size, err := copyFile(ctx, src, dst, !ok)
	if err != nil {
		return "", 0, err
	}
	if ok {
		return known.SHA256, size, nil
	}
	if err := store.AddDigests(obj, map[string]store.Digest{name: store.NewDigest(sum, fi)}); err != nil {
		e.log().Warn("export: the store keeps no digest of the file; the next export hashes it again", "file", src, "err", err)
	}
	return sum, size, nil
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
// returns the size of the content and, when withSum is set, its sha256.
func copyFile(ctx context.Context, src, dst string, withSum bool) (string, int64, error) {
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
	var h hash.Hash
	var w io.Writer
	if withSum {
		h = sha256.New()
		w = h
	}
	if err := sparse.Copy(ctx, out, in, st.Size(), w); err != nil {
		return "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", 0, err
	}
	ok = true
	if h == nil {
		return "", st.Size(), nil
	}
	return hex.EncodeToString(h.Sum(nil)), st.Size(), nil
}
