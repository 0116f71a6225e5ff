package composer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/container"
	"github.com/kib-project/kib/internal/upload/registrytest"
)

// ociArchive is img as an OCI archive (an OCI image layout in a tar), as
// kib builds the container image type.
func ociArchive(t *testing.T, img v1.Image) []byte {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// containerComposeRequest is a Koji compose of a container image with the
// container upload target, as koji-osbuild sends it.
const containerComposeRequest = `{"distribution":"debian-12",
 "koji":{"name":"Debian-Container","version":"12","release":"%[1]s","server":"https://koji.example.org/kojihub","task_id":79},
 "image_requests":[
  {"architecture":"x86_64","image_type":"container","repositories":[{"baseurl":"http://deb.debian.org/debian"}],
   "upload_targets":[{"type":"container","upload_options":{"name":"debian/kib-%[1]s","tag":"12"}}]}]}`

// waitCompose polls a compose until it is no longer pending and returns
// its status body.
func waitCompose(t *testing.T, p *plugin, id string) (map[string]any, []byte) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, data := p.send("GET", "/composes/"+id, nil)
		status, file := composeStatusFile(t, data)
		if status != "pending" {
			return file, data
		}
		if time.Now().After(deadline) {
			t.Fatalf("compose did not finish: %s", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pullAndCheck pulls ref back from the registry and checks that it is want:
// the same manifest digest, the same layers, every blob readable and
// matching its digest.
func pullAndCheck(t *testing.T, reg *registrytest.Registry, ref string, want v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		t.Fatalf("upload_status url %q is not an image reference: %v", ref, err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: reg.CertPool, MinVersion: tls.VersionTLS12}}
	got, err := remote.Image(r, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: reg.User, Password: reg.Password}))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	gd, _ := got.Digest()
	wd, _ := want.Digest()
	if gd != wd {
		t.Fatalf("pulled digest %s, built %s", gd, wd)
	}
	gl, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wl, _ := want.Layers()
	if len(gl) != len(wl) {
		t.Fatalf("pulled %d layers, built %d", len(gl), len(wl))
	}
	for i := range gl {
		g, _ := gl[i].Digest()
		w, _ := wl[i].Digest()
		gdiff, _ := gl[i].DiffID()
		wdiff, _ := wl[i].DiffID()
		if g != w || gdiff != wdiff {
			t.Errorf("layer %d: pulled %s (diff %s), built %s (diff %s)", i, g, gdiff, w, wdiff)
		}
		// The blob's bytes: remote checks them against the digest at EOF.
		rc, err := gl[i].Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		size, _ := wl[i].Size()
		if err != nil || n != size {
			t.Errorf("layer %d: read %d of %d bytes: %v", i, n, size, err)
		}
	}
}

// TestContainerUploadThroughKojiCompose runs a Koji compose of a container
// image with the container target through the compose API, the job queue
// and its workers, into the real registry (docker-registry, TLS and basic
// auth, credentials from the docker config): upload_status carries the
// pushed reference and manifest digest as composer reports them, the image
// pulls back with the same digest and layers, and the Koji build's
// upload_target_results carry the same result.
func TestContainerUploadThroughKojiCompose(t *testing.T) {
	reg := registrytest.Start(t)
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.Password))
	cu, err := container.New(container.Config{Registry: reg.Host + "/images", CAFile: reg.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	ups := upload.Uploaders{upload.TargetContainer: cu}
	img, err := random.Image(512<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	archive := ociArchive(t, img)
	digest, _ := img.Digest()

	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			release := fmt.Sprintf("%s%08x", backend, rand.Uint32())
			hub := kojitest.New(t, kojitest.Options{})
			hub.AddUser("kib", "pw")
			hub.AddContentGenerator("kib", "kib")
			kh := &jobs.KojiHub{Server: "https://koji.example.org/kojihub", Connect: hub.Connector("kib", "pw")}
			b := setupUploads(t, backend, nil, kh, ups)
			b.builder.SetImageData(func(imageType string) []byte {
				if imageType == "container" {
					return archive
				}
				return nil
			})
			p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}
			resp, data := p.send("POST", "/compose", []byte(fmt.Sprintf(containerComposeRequest, release)))
			if resp.StatusCode != 201 {
				t.Fatalf("POST /compose: %d %s", resp.StatusCode, data)
			}
			var created struct{ ID string }
			_ = json.Unmarshal(data, &created)
			file, data := waitCompose(t, p, created.ID)
			reader, _ := koji.New(hub.URL, koji.Options{})
			build, err := reader.GetBuild(context.Background(), "Debian-Container-12-"+release)
			if err != nil || build == nil {
				t.Fatalf("build not on the hub: %v", err)
			}
			if file["status"] != "success" || build.State != koji.BuildComplete {
				t.Fatalf("status %v (%s), build state %d", file["status"], data, build.State)
			}
			images := file["image_statuses"].([]map[string]any)
			us, _ := images[0]["upload_status"].(map[string]any)
			opts, _ := us["options"].(map[string]any)
			wantURL := reg.Host + "/images/debian/kib-" + release + ":12"
			if us["type"] != "container" || us["status"] != "success" || opts["url"] != wantURL || opts["digest"] != digest.String() || len(opts) != 2 {
				t.Fatalf("upload_status %v, want url %s and digest %s", us, wantURL, digest)
			}
			pullAndCheck(t, reg, wantURL, img)

			// The Koji metadata carries the same result.
			ti, _ := build.Extra["typeinfo"].(map[string]any)
			imgs, _ := ti["image"].(map[string]any)
			var found []string
			for _, v := range imgs {
				info, _ := v.(map[string]any)
				rs, _ := info["upload_target_results"].([]any)
				for _, r := range rs {
					rm, _ := r.(map[string]any)
					found = append(found, fmt.Sprintf("%s %v", rm["name"], rm["options"]))
					if rm["osbuild_artifact"] == nil {
						t.Errorf("upload_target_results without osbuild_artifact: %v", rm)
					}
				}
			}
			if want := fmt.Sprintf("org.osbuild.container map[digest:%s url:%s]", digest, wantURL); len(found) != 1 || found[0] != want {
				t.Errorf("upload_target_results %q, want [%q]", found, want)
			}
		})
	}
}

// TestContainerUploadDefaults: a compose without Koji, with the image
// type's default target (top-level upload_options) and no name: composer's
// defaults, the distribution as the name and a UUID as the tag.
func TestContainerUploadDefaults(t *testing.T) {
	reg := registrytest.Start(t)
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.Password))
	cu, err := container.New(container.Config{Registry: reg.Host + "/images", CAFile: reg.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	archive := ociArchive(t, img)
	b := setupUploads(t, "sqlite", nil, nil, upload.Uploaders{upload.TargetContainer: cu})
	b.builder.SetImageData(func(string) []byte { return archive })
	p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}
	resp, data := p.send("POST", "/compose", []byte(`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"container",
	 "repositories":[{"baseurl":"http://deb.debian.org/debian"}],"upload_options":{}}}`))
	if resp.StatusCode != 201 {
		t.Fatalf("POST /compose: %d %s", resp.StatusCode, data)
	}
	var created struct{ ID string }
	_ = json.Unmarshal(data, &created)
	deadline := time.Now().Add(90 * time.Second)
	var st map[string]any
	for {
		_, data = p.send("GET", "/composes/"+created.ID, nil)
		st = nil
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatalf("status: %v: %s", err, data)
		}
		if st["status"] != "pending" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	is, _ := st["image_status"].(map[string]any)
	us, _ := is["upload_status"].(map[string]any)
	opts, _ := us["options"].(map[string]any)
	url, _ := opts["url"].(string)
	tag, ok := strings.CutPrefix(url, reg.Host+"/images/debian-12:")
	digest, _ := img.Digest()
	if st["status"] != "success" || us["type"] != "container" || !ok || len(tag) != 36 || opts["digest"] != digest.String() {
		t.Fatalf("status %s, want success with url %s/images/debian-12:<uuid> and digest %s", data, reg.Host, digest)
	}
	pullAndCheck(t, reg, url, img)
}

// TestContainerTargetRefusedAtPOST: a target that does not fit the image
// type, or container options that are not ContainerUploadOptions, are
// refused when the compose is posted, with an error naming the field;
// nothing is queued.
func TestContainerTargetRefusedAtPOST(t *testing.T) {
	cu, err := container.New(container.Config{Registry: "127.0.0.1:1/images"})
	if err != nil {
		t.Fatal(err)
	}
	b := setupUploads(t, "sqlite", nil, nil, upload.Uploaders{upload.TargetContainer: cu})
	req := func(imageType, extra string) string {
		return `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"` + imageType +
			`","repositories":[{"baseurl":"http://deb.debian.org/debian"}]` + extra + `}}`
	}
	for _, tt := range []struct {
		name, body string
		code       string
		details    []string
	}{
		{"container target for a disk", req("guest-image", `,"upload_targets":[{"type":"container","upload_options":{}}]`), "38",
			[]string{"image_request.upload_targets[0].type", `"guest-image"`, "aws.s3", `not "container"`}},
		{"container target for a tar", req("tar", `,"upload_targets":[{"type":"container","upload_options":{"name":"x"}}]`), "38",
			[]string{"image_request.upload_targets[0].type", `not "container"`}},
		{"aws.s3 target for a container", req("container", `,"upload_targets":[{"type":"aws.s3","upload_options":{"region":"eu-west-1"}}]`), "38",
			[]string{"image_request.upload_targets[0].type", `"container"`, `not "aws.s3"`}},
		{"gcp target for a container", req("container", `,"upload_targets":[{"type":"gcp","upload_options":{"region":"us"}}]`), "38",
			[]string{"image_request.upload_targets[0].type", `not "gcp"`}},
		{"aws options for a container", req("container", `,"upload_options":{"region":"eu-west-1"}`), "30",
			[]string{"image_request.upload_options", `unknown field "region"`}},
		{"name of the wrong type", req("container", `,"upload_targets":[{"type":"container","upload_options":{"name":5}}]`), "30",
			[]string{`image_request.upload_targets[0].upload_options.name: must be a string for upload type "container", not number`}},
		{"share_with_accounts of the wrong type", req("ami", `,"upload_targets":[{"type":"aws","upload_options":{"region":"r","share_with_accounts":"123"}}]`), "",
			[]string{"image_request.upload_targets[0].upload_options.share_with_accounts: must be an array"}},
		{"unknown container option", req("container", `,"upload_targets":[{"type":"container","upload_options":{"name":"x","registry":"quay.io"}}]`), "30",
			[]string{"image_request.upload_targets[0].upload_options", `unknown field "registry"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, b, "POST", "/api/image-builder-composer/v2/compose", "application/json", tt.body)
			if status != 400 || body["kind"] != "Error" || (tt.code != "" && body["id"] != tt.code) {
				t.Fatalf("POST: %d %v, want 400 error %s", status, body, tt.code)
			}
			d := fmt.Sprint(body["details"])
			t.Logf("details: %s", d)
			for _, w := range tt.details {
				if !strings.Contains(d, w) {
					t.Errorf("error %v: want it to mention %s", body, w)
				}
			}
		})
	}
	if n := b.builder.Builds(); n != 0 {
		t.Errorf("%d builds ran for refused composes", n)
	}
}
