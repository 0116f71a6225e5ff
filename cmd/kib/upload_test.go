package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/upload/aws/ec2test"
	"github.com/kib-project/kib/internal/upload/registrytest"
	"github.com/kib-project/kib/internal/upload/s3test"
)

// builtImage writes an image as `kib build` leaves it: the file and its
// build-info.json in an export directory.
func builtImage(t *testing.T, imageType, name, bootMode string, data []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), imageType)
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name)
	if data != nil {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	bi, _ := json.Marshal(buildinfo.BuildInfo{Arch: "x86_64", BootMode: bootMode, ExportName: imageType, ExportFilename: name,
		KibVersion: "test", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), Distro: "debian-12", ImageType: imageType})
	if err := os.WriteFile(filepath.Join(dir, "build-info.json"), bi, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeTemp writes s to a file name in a new temporary directory.
func writeTemp(t *testing.T, name, s string) string {
	return writeFile(t, t.TempDir(), name, s)
}

// result returns the JSON object kib upload printed last.
func result(t *testing.T, out string) map[string]any {
	t.Helper()
	i := strings.LastIndex("\n"+out, "\n{\n")
	var r map[string]any
	if i < 0 || json.Unmarshal([]byte(out[i:]), &r) != nil {
		t.Fatalf("no result in output:\n%s", out)
	}
	return r
}

func TestUploadS3AndAWS(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "kib")
	e := &ec2test.Server{AccessKeyID: srv.AccessKey, Steps: 1}
	es := httptest.NewServer(e)
	t.Cleanup(es.Close)
	conf := writeTemp(t, "kib.toml", fmt.Sprintf(`
[upload."aws.s3"]
bucket = %q
endpoint = %q
access_key_id = %q
secret_access_key = %q
state_dir = %q

[upload.aws]
bucket = %q
endpoint = %q
ec2_endpoint = %q
access_key_id = %q
secret_access_key = %q
state_dir = %q
poll_interval_seconds = 0
`, bucket, srv.Endpoint, srv.AccessKey, srv.SecretKey, t.TempDir(), bucket, srv.Endpoint, es.URL, srv.AccessKey, srv.SecretKey, t.TempDir()))

	qcow2 := builtImage(t, "qcow2", "disk.qcow2", "hybrid", []byte(strings.Repeat("qcow2 ", 100000)))
	out, err := runKib(t, "upload", "--config", conf, "--options", writeTemp(t, "o.json", `{"region":"us-east-1","public":true}`), filepath.Dir(qcow2))
	if err != nil {
		t.Fatalf("kib upload: %v\n%s", err, out)
	}
	r := result(t, out)
	opts, _ := r["options"].(map[string]any)
	if r["type"] != "aws.s3" || !strings.HasPrefix(fmt.Sprint(opts["url"]), srv.Endpoint+"/"+bucket+"/kib-") {
		t.Errorf("result %v", r)
	}

	ami := builtImage(t, "ami", "image.raw", "uefi", []byte(strings.Repeat("raw ", 100000)))
	out, err = runKib(t, "upload", "--config", conf, "--target", "aws", "--options", writeTemp(t, "o.json", `{"region":"eu-west-1","share_with_accounts":[]}`), ami)
	if err != nil {
		t.Fatalf("kib upload: %v\n%s", err, out)
	}
	r = result(t, out)
	opts, _ = r["options"].(map[string]any)
	if im, ok := e.Image(fmt.Sprint(opts["ami"])); r["type"] != "aws" || opts["region"] != "eu-west-1" || !ok || im.BootMode != "uefi" {
		t.Errorf("result %v, image %+v", r, im)
	}

	// Refused before anything is sent.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "aws.s3", ami}, `a ami image can be uploaded to "aws" only`},
		{[]string{"--target", "container", qcow2}, `a qcow2 image can be uploaded to "aws.s3" only`},
		{[]string{qcow2, "--options", writeTemp(t, "bad.json", `{"region":"r","acl":"x"}`)}, `unknown field "acl"`},
	} {
		args := append([]string{"upload", "--config", conf, "--options", writeTemp(t, "o.json", `{"region":"r"}`)}, tc.args...)
		if out, err := runKib(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kib %v: %v\n%s", args, err, out)
		}
	}
	// A target without its [upload] table.
	if _, err := runKib(t, "upload", "--config", writeTemp(t, "empty.toml", ""), "--options", writeTemp(t, "o.json", `{"region":"r"}`), qcow2); err == nil || !strings.Contains(err.Error(), `[upload."aws.s3"]`) {
		t.Errorf("no config: %v", err)
	}
}

func TestUploadContainer(t *testing.T) {
	reg := registrytest.Start(t)
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lp, _ := layout.Write(dir, empty.Index)
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "container.tar")
	f, _ := os.Create(archive)
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	f.Close()
	b, _ := os.ReadFile(archive)
	p := builtImage(t, "container", "container.tar", "none", b)
	digest, _ := img.Digest()
	conf := writeTemp(t, "kib.toml", fmt.Sprintf("[upload.container]\nregistry = %q\nca_file = %q\n", reg.Host+"/images", reg.CAFile))

	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.Password))
	out, err := runKib(t, "upload", "--config", conf, "--options", writeTemp(t, "o.json", `{}`), p)
	if err != nil {
		t.Fatalf("kib upload: %v\n%s", err, out)
	}
	r := result(t, out)
	opts, _ := r["options"].(map[string]any)
	if r["type"] != "container" || opts["url"] != reg.Host+"/images/debian-12:latest" || opts["digest"] != digest.String() {
		t.Errorf("result %v, want digest %s", r, digest)
	}

	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, "wrong"))
	if out, err := runKib(t, "upload", "--config", conf, "--options", writeTemp(t, "o.json", `{"name":"x","tag":"y"}`), p); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("bad credentials: %v\n%s", err, out)
	}
}
