package container_test

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/container"
	"github.com/kib-project/kib/internal/upload/registrytest"
)

// ociArchive writes a random image as an OCI archive and returns its path
// and manifest digest.
func ociArchive(t *testing.T) (string, string) {
	t.Helper()
	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "container.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, _ := img.Digest()
	return p, d.String()
}

func TestPush(t *testing.T) {
	reg := registrytest.Start(t)
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.Password))
	p, digest := ociArchive(t)
	u, err := container.New(container.Config{Registry: reg.Host + "/kib", CAFile: reg.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	var sent, total int64
	res, err := u.Upload(context.Background(), upload.Artifact{Path: p, Filename: "container.tar", ImageType: "container"},
		json.RawMessage(`{"name":"debian-12","tag":"v1"}`), func(s, n int64) { sent, total = s, n })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"url": reg.Host + "/kib/debian-12:v1", "digest": digest}
	if res.Type != "container" || res.Options["url"] != want["url"] || res.Options["digest"] != want["digest"] {
		t.Fatalf("result %+v, want %v", res, want)
	}
	if total == 0 || sent != total {
		t.Errorf("progress ended at %d/%d", sent, total)
	}
	// The registry serves the image under the tag, with the same digest.
	ref, _ := name.ParseReference(reg.Host + "/kib/debian-12:v1")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: reg.CertPool}}
	desc, err := remote.Head(ref, remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Errorf("registry has %s, pushed %s", desc.Digest, digest)
	}
}

func TestBadCredentials(t *testing.T) {
	reg := registrytest.Start(t)
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, "wrong"))
	p, _ := ociArchive(t)
	u, _ := container.New(container.Config{Registry: reg.Host, CAFile: reg.CAFile})
	_, err := u.Upload(context.Background(), upload.Artifact{Path: p}, json.RawMessage(`{"name":"x"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Fatalf("err = %v, want the registry's 401 Unauthorized", err)
	}
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{`{"name":"a","tag":"b"}`, ""},
		{`{"name":"a"}`, ""},
		{`{"tag":"b"}`, "name: required"},
		{`{"name":"a","registry":"b"}`, `unknown field "registry"`},
	} {
		_, err := container.ParseOptions(json.RawMessage(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseOptions(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}
