package gcp

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/emulatortest"
	"github.com/kib-project/kib/internal/upload/gcp/computetest"
)

type env struct {
	gce    *computetest.Server
	gcs    *storage.Client
	bucket string
	cfg    Config
}

func setup(t *testing.T) *env {
	t.Helper()
	ep := emulatortest.FakeGCS(t)
	s := computetest.New("kib-images")
	t.Cleanup(s.Close)
	s.StorageURL = ep
	s.Polls = 2
	keyFile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyFile, s.KeyJSON(false), 0o600); err != nil {
		t.Fatal(err)
	}
	gcs, err := storage.NewClient(context.Background(), option.WithEndpoint(ep), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcs.Close() })
	bucket := "kib-test-" + hex.EncodeToString(randBytes(4))
	if err := gcs.Bucket(bucket).Create(context.Background(), "kib-images", nil); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
	return &env{gce: s, gcs: gcs, bucket: bucket, cfg: Config{
		CredentialsFile: keyFile, StorageEndpoint: ep, ComputeEndpoint: s.URL,
	}}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

// makeGCE writes a GCE tarball (disk.raw in a gzip'd tar) of a raw disk
// with some random data.
func makeGCE(t testing.TB, dir, bootMode string, first string) upload.Artifact {
	t.Helper()
	path := filepath.Join(dir, "image.tar.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	disk := make([]byte, 8<<20)
	copy(disk[1<<20:], randBytes(3<<20))
	if err := tw.WriteHeader(&tar.Header{Name: first, Mode: 0o644, Size: int64(len(disk)), Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(disk); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return upload.Artifact{Path: path, Filename: "image.tar.gz", ImageType: "gce", Arch: "x86_64", BootMode: bootMode, SHA256: hex.EncodeToString(sum[:]), Size: int64(buf.Len())}
}

func TestParseOptions(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"minimal", `{"region":"europe-west1"}`, ""},
		{"all", `{"region":"eu","bucket":"b","image_name":"debian-12","share_with_accounts":["user:a@example.com","serviceAccount:x@p.iam.gserviceaccount.com","group:g@example.com","domain:example.com"]}`, ""},
		{"no region", `{"bucket":"b"}`, "region: required"},
		{"unknown field", `{"region":"r","project":"p"}`, `unknown field "project"`},
		{"bad image name", `{"region":"r","image_name":"Debian_12"}`, "image_name \"Debian_12\": must be"},
		{"bad member", `{"region":"r","share_with_accounts":["a@example.com"]}`, "share_with_accounts[0]"},
		{"empty member", `{"region":"r","share_with_accounts":["user:"]}`, "share_with_accounts[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOptions(json.RawMessage(tt.in))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ParseOptions(%s): %v", tt.in, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParseOptions(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestCheckArtifactRefusesWrongImages(t *testing.T) {
	dir := t.TempDir()
	good := makeGCE(t, dir, "hybrid", "disk.raw")
	if err := checkArtifact(good); err != nil {
		t.Fatalf("good tarball refused: %v", err)
	}
	vhd := good
	vhd.ImageType = "vhd"
	qcow := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(qcow, []byte("QFI\xfb\x00\x00\x00\x03"), 0o644); err != nil {
		t.Fatal(err)
	}
	notTar := good
	notTar.Path = qcow
	other := makeGCE(t, t.TempDir(), "hybrid", "root.img")
	for name, tt := range map[string]struct {
		a    upload.Artifact
		want string
	}{
		"vhd":          {vhd, `image type "vhd" cannot be uploaded to gcp`},
		"not gzip":     {notTar, "is not a gzip'd tarball"},
		"not disk.raw": {other, `first member is "root.img"`},
	} {
		t.Run(name, func(t *testing.T) {
			if err := checkArtifact(tt.a); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkArtifact = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestUploadEndToEnd(t *testing.T) {
	e := setup(t)
	a := makeGCE(t, t.TempDir(), "uefi", "disk.raw")
	var last int64
	opts := json.RawMessage(`{"region":"europe-west1","bucket":"` + e.bucket + `","image_name":"debian-12-kib","share_with_accounts":["user:alice@example.com","group:release@example.com"]}`)
	res, err := New(e.cfg).Upload(context.Background(), a, opts, func(sent, total int64) { last = sent })
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if res.Type != "gcp" || res.Options["image_name"] != "debian-12-kib" || res.Options["project_id"] != "kib-images" || len(res.Options) != 2 {
		t.Fatalf("result %+v", res)
	}
	if last != a.Size {
		t.Errorf("progress ended at %d of %d", last, a.Size)
	}
	im := e.gce.Image("debian-12-kib")
	if im == nil {
		t.Fatal("no image created")
	}
	if im.Source != "https://storage.googleapis.com/"+e.bucket+"/debian-12-kib.tar.gz" || im.ContainerType != "TAR" ||
		!slices.Equal(im.StorageLocations, []string{"europe-west1"}) {
		t.Errorf("image %+v", im)
	}
	if want := []string{"UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"}; !slices.Equal(im.GuestOSFeatures, want) {
		t.Errorf("guest OS features %v, want %v", im.GuestOSFeatures, want)
	}
	if got := im.Members["roles/compute.imageUser"]; !slices.Equal(got, []string{"user:alice@example.com", "group:release@example.com"}) {
		t.Errorf("image shared with %v", im.Members)
	}
	if e.gce.Calls["globalOperations.wait"] < 2 {
		t.Errorf("operation waited on %d times, want the RUNNING answers polled through", e.gce.Calls["globalOperations.wait"])
	}
	// The staging object is gone.
	if _, err := e.gcs.Bucket(e.bucket).Object("debian-12-kib.tar.gz").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("staging object still there: %v", err)
	}

	// A legacy image in the default bucket, with a generated name.
	e.cfg.Bucket = e.bucket
	b := makeGCE(t, t.TempDir(), "legacy", "disk.raw")
	res, err = New(e.cfg).Upload(context.Background(), b, json.RawMessage(`{"region":"us"}`), nil)
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	name, _ := res.Options["image_name"].(string)
	im = e.gce.Image(name)
	if im == nil || slices.Contains(im.GuestOSFeatures, "UEFI_COMPATIBLE") {
		t.Fatalf("legacy image %q: %+v", name, im)
	}
}

func TestUploadResumesObject(t *testing.T) {
	e := setup(t)
	e.cfg.Bucket = e.bucket
	a := makeGCE(t, t.TempDir(), "hybrid", "disk.raw")
	u := New(e.cfg)
	// A try cut after its upload leaves the staging object behind.
	creds, project, err := u.credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.uploadObject(context.Background(), creds, a, e.bucket, "again.tar.gz", "again", nil); err != nil {
		t.Fatal(err)
	}
	r, err := e.gcs.Bucket(e.bucket).Object("again.tar.gz").NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		t.Fatalf("object sha256 %s, image sha256 %s", got, a.SHA256)
	}
	// The next try finds it by digest and size and does not send it again.
	var calls int
	res, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"europe-west1","image_name":"again"}`), func(sent, total int64) {
		calls++
		if sent != total {
			t.Errorf("progress %d of %d: the object was sent again", sent, total)
		}
	})
	if err != nil {
		t.Fatalf("resumed Upload: %v", err)
	}
	if calls != 1 || res.Options["project_id"] != project || e.gce.Image("again") == nil {
		t.Errorf("resumed upload: progress reported %d times, result %+v", calls, res)
	}
}

func TestBadCredentials(t *testing.T) {
	e := setup(t)
	if err := os.WriteFile(e.cfg.CredentialsFile, e.gce.KeyJSON(true), 0o600); err != nil {
		t.Fatal(err)
	}
	a := makeGCE(t, t.TempDir(), "hybrid", "disk.raw")
	_, err := New(e.cfg).Upload(context.Background(), a, json.RawMessage(`{"region":"europe-west1","bucket":"`+e.bucket+`","image_name":"bad-creds"}`), nil)
	if err == nil {
		t.Fatal("upload with a wrong key succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "Invalid JWT Signature.") && !strings.Contains(msg, "Request had invalid authentication credentials") {
		t.Fatalf("error %q, want Google's message", msg)
	}
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") {
		t.Fatalf("error %q is not one line", msg)
	}
	if e.gce.Image("bad-creds") != nil {
		t.Fatal("image created with bad credentials")
	}
}

func TestOperationError(t *testing.T) {
	e := setup(t)
	e.gce.InsertFault = &computetest.Fault{Code: "QUOTA_EXCEEDED", Message: "Quota 'IMAGES' exceeded. Limit: 100.0 globally."}
	a := makeGCE(t, t.TempDir(), "hybrid", "disk.raw")
	_, err := New(e.cfg).Upload(context.Background(), a, json.RawMessage(`{"region":"europe-west1","bucket":"`+e.bucket+`","image_name":"quota"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "QUOTA_EXCEEDED: Quota 'IMAGES' exceeded. Limit: 100.0 globally. (HTTP 400)") {
		t.Fatalf("Upload = %v", err)
	}
	if _, err := e.gcs.Bucket(e.bucket).Object("quota.tar.gz").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("staging object kept after a failed import: %v", err)
	}
}
