package stages

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kib-project/kib/internal/stageopt"
)

// OCIArchive is the oci-archive stage; its options are stageopt.OCIArchive.
type OCIArchive stageopt.OCIArchive

func init() {
	register("oci-archive", func(o *stageopt.OCIArchive) Stage { return (*OCIArchive)(o) })
}

// goArch maps Debian architectures to OCI ones.
var goArch = map[string]string{"amd64": "amd64", "arm64": "arm64", "ppc64el": "ppc64le", "s390x": "s390x", "i386": "386", "armhf": "arm"}

// Run writes env.Out/Filename.
func (o *OCIArchive) Run(ctx context.Context, env *Env) error {
	src, err := env.Input(o.Source)
	if err != nil {
		return err
	}
	layerPath := filepath.Join(env.Work, "layer.tar.gz")
	if err := writeGzipLayer(ctx, env, src, o.Exclude, layerPath); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	created := v1.Time{Time: time.Unix(env.SourceDateEpoch, 0).UTC()}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "kib oci-archive", Comment: "root file system"},
	})
	if err != nil {
		return err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	arch, ok := goArch[env.Arch]
	if !ok {
		return fmt.Errorf("architecture %q has no OCI name", env.Arch)
	}
	cf.Architecture, cf.OS, cf.Created = arch, "linux", created
	cf.Config.Cmd, cf.Config.Entrypoint, cf.Config.Env = o.Cmd, o.Entrypoint, o.Env
	cf.Config.WorkingDir, cf.Config.Labels = o.WorkingDir, o.Labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	img, err = mutate.CreatedAt(img, created)
	if err != nil {
		return err
	}
	return writeOCIArchive(img, layer, o.Ref, env.SourceDateEpoch, filepath.Join(env.Out, o.Filename))
}

func writeGzipLayer(ctx context.Context, env *Env, dir string, exclude []string, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := newParallelGzip(bw, 6, runtime.NumCPU())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(zw, pr)
		pr.CloseWithError(err)
		done <- err
	}()
	tarErr := TarTree(ctx, env, dir, exclude, pw)
	pw.CloseWithError(tarErr)
	if err := errors.Join(tarErr, <-done); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// writeOCIArchive writes img as an OCI image layout in a tar with sorted
// entries, fixed times and owners.
func writeOCIArchive(img v1.Image, layer v1.Layer, ref string, sde int64, path string) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	mdesc, err := descriptor(img)
	if err != nil {
		return err
	}
	mdesc.Annotations = map[string]string{"org.opencontainers.image.ref.name": ref}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{*mdesc}}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	cdig, err := img.ConfigName()
	if err != nil {
		return err
	}
	ldig, err := layer.Digest()
	if err != nil {
		return err
	}
	type entry struct {
		name string
		data []byte
		file func() (io.ReadCloser, int64, error)
	}
	entries := []entry{
		{name: "blobs/"}, {name: "blobs/sha256/"},
		{name: "blobs/sha256/" + cdig.Hex, data: config},
		{name: "blobs/sha256/" + mdesc.Digest.Hex, data: manifest},
		{name: "blobs/sha256/" + ldig.Hex, file: func() (io.ReadCloser, int64, error) {
			rc, err := layer.Compressed()
			if err != nil {
				return nil, 0, err
			}
			size, err := layer.Size()
			return rc, size, err
		}},
		{name: "index.json", data: indexJSON},
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	mtime := time.Unix(sde, 0).UTC()
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, ModTime: mtime, Format: tar.FormatUSTAR}
		switch {
		case strings.HasSuffix(e.name, "/"):
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case e.file != nil:
			rc, size, err := e.file()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, size
			if err := tw.WriteHeader(hdr); err != nil {
				rc.Close()
				return err
			}
			n, err := io.Copy(tw, rc)
			rc.Close()
			if err != nil {
				return err
			}
			if n != size {
				return fmt.Errorf("layer blob: wrote %d bytes, want %d", n, size)
			}
		default:
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(e.data))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func descriptor(img v1.Image) (*v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	s, err := img.Size()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Size: s, Digest: d}, nil
}

// Tools lists the host tools the stage runs.
func (o *OCIArchive) Tools() []string { return []string{"tar"} }
