// Package container pushes container images to a registry (the Cloud API's
// "container" target) with go-containerregistry: the OCI archive kib built
// is read in place (no unpacking) and pushed under <registry>/<name>:<tag>;
// credentials come from the standard docker config (DOCKER_CONFIG,
// ~/.docker/config.json, credential helpers).
package container

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/awss3"
)

// Config is the service side of the target.
type Config struct {
	// Registry is where images go: a host[:port] with an optional
	// repository prefix, e.g. "registry.example.com/images". Required.
	Registry string
	// CAFile is a PEM bundle trusted for the registry's TLS certificate,
	// beside the system's. Default: the system's only.
	CAFile string
	// PlainHTTP talks to the registry without TLS (loopback registries).
	PlainHTTP bool
	// Username and Password, when set, replace the docker config's
	// credentials for the registry.
	Username, Password string
	// Jobs is the number of blobs pushed at once. Default 4.
	Jobs int
}

// Options are the Cloud API's ContainerUploadOptions.
type Options struct {
	Name string `json:"name,omitempty"`
	Tag  string `json:"tag,omitempty"`
}

// ParseOptions decodes ContainerUploadOptions; name is required here (the
// compose service fills in composer's default, the distribution) and tag
// defaults to "latest".
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := awss3.DecodeStrict(raw, &o); err != nil {
		return o, err
	}
	if o.Name == "" {
		return o, errors.New("name: required")
	}
	if o.Tag == "" {
		o.Tag = "latest"
	}
	return o, nil
}

// Uploader is the container target. It is safe for concurrent use.
type Uploader struct {
	cfg Config
	rt  http.RoundTripper
}

var _ upload.Uploader = (*Uploader)(nil)

// New returns the uploader of cfg; it reads CAFile but does no network I/O.
func New(cfg Config) (*Uploader, error) {
	if cfg.Registry == "" {
		return nil, errors.New("container: registry: required")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("container: ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("container: ca_file %s: no PEM certificates", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Uploader{cfg: cfg, rt: tr}, nil
}

// Reference is the reference an image is pushed to.
func (u *Uploader) Reference(o Options) (name.Reference, error) {
	var opts []name.Option
	if u.cfg.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	s := strings.TrimRight(u.cfg.Registry, "/") + "/" + o.Name + ":" + o.Tag
	ref, err := name.NewTag(s, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("name/tag: %q is not a valid image reference: %w", s, err)
	}
	return ref, nil
}

// Upload pushes the OCI archive and returns {"url": <reference>, "digest":
// <manifest digest>}.
func (u *Uploader) Upload(ctx context.Context, a upload.Artifact, options json.RawMessage, progress upload.Progress) (upload.Result, error) {
	o, err := ParseOptions(options)
	if err != nil {
		return upload.Result{}, err
	}
	ref, err := u.Reference(o)
	if err != nil {
		return upload.Result{}, err
	}
	img, closeArchive, err := OpenArchive(a.Path)
	if err != nil {
		return upload.Result{}, err
	}
	defer closeArchive()
	dig, err := img.Digest()
	if err != nil {
		return upload.Result{}, err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(u.rt), remote.WithJobs(max(1, u.cfg.Jobs))}
	if u.cfg.Jobs == 0 {
		opts[2] = remote.WithJobs(4)
	}
	if u.cfg.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u.cfg.Username, Password: u.cfg.Password}))
	} else {
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	var done chan struct{}
	if progress != nil {
		ch := make(chan v1.Update, 16)
		done = make(chan struct{})
		go func() {
			defer close(done)
			for up := range ch {
				if up.Error == nil {
					progress(up.Complete, up.Total)
				}
			}
		}()
		opts = append(opts, remote.WithProgress(ch))
	}
	err = remote.Write(ref, img, opts...)
	if done != nil {
		<-done
	}
	if err != nil {
		return upload.Result{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return upload.Result{Type: upload.TargetContainer, Options: map[string]any{"url": ref.String(), "digest": dig.String()}}, nil
}

// OpenArchive reads an OCI archive (an OCI image layout in a tar) in place:
// the tar's entries are indexed once and blobs are read from their offsets.
// The archive must hold one image (index.json with one manifest).
func OpenArchive(path string) (v1.Image, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("container: %w", err)
	}
	ar := &archive{f: f, entries: map[string]entry{}}
	if err := ar.index(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("container: %s: %w", path, err)
	}
	img, err := ar.image()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("container: %s: %w", path, err)
	}
	return img, func() { f.Close() }, nil
}

type entry struct{ off, size int64 }

type archive struct {
	f       *os.File
	entries map[string]entry
}

// offsetReader counts the bytes tar has consumed.
type offsetReader struct {
	r   io.Reader
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}

func (ar *archive) index() error {
	or := &offsetReader{r: ar.f}
	tr := tar.NewReader(or)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not an OCI archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// The reader has consumed the header: the data starts here.
		ar.entries[strings.TrimPrefix(h.Name, "./")] = entry{off: or.off, size: h.Size}
	}
}

func (ar *archive) open(name string) (*io.SectionReader, error) {
	e, ok := ar.entries[name]
	if !ok {
		return nil, fmt.Errorf("%s: missing from the archive", name)
	}
	return io.NewSectionReader(ar.f, e.off, e.size), nil
}

func (ar *archive) read(name string) ([]byte, error) {
	r, err := ar.open(name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func (ar *archive) image() (v1.Image, error) {
	b, err := ar.read("index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("index.json: %d manifests, want one image", len(idx.Manifests))
	}
	raw, err := ar.read(blobPath(idx.Manifests[0].Digest))
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return partial.CompressedToImage(&core{ar: ar, raw: raw, m: m, mt: idx.Manifests[0].MediaType})
}

// core is the small image core go-containerregistry's partial package
// completes into a v1.Image.
type core struct {
	ar  *archive
	raw []byte
	m   *v1.Manifest
	mt  types.MediaType
}

func (c *core) RawConfigFile() ([]byte, error) { return c.ar.read(blobPath(c.m.Config.Digest)) }
func (c *core) MediaType() (types.MediaType, error) {
	if c.m.MediaType != "" {
		return c.m.MediaType, nil
	}
	return c.mt, nil
}
func (c *core) RawManifest() ([]byte, error) { return c.raw, nil }

func (c *core) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == c.m.Config.Digest {
		return &blob{ar: c.ar, d: c.m.Config}, nil
	}
	for _, l := range c.m.Layers {
		if l.Digest == h {
			return &blob{ar: c.ar, d: l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in the manifest", h)
}

type blob struct {
	ar *archive
	d  v1.Descriptor
}

func (b *blob) Digest() (v1.Hash, error) { return b.d.Digest, nil }
func (b *blob) Size() (int64, error)     { return b.d.Size, nil }
func (b *blob) MediaType() (types.MediaType, error) {
	return b.d.MediaType, nil
}
func (b *blob) Compressed() (io.ReadCloser, error) {
	r, err := b.ar.open(blobPath(b.d.Digest))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}
