package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/upload/azure/armtest"
	"github.com/kib-project/kib/internal/upload/emulatortest"
	"github.com/kib-project/kib/internal/upload/gcp/computetest"
)

// writeImageExport writes an image as `kib build` exports it: the file and its
// build-info.json in dir.
func writeImageExport(t *testing.T, dir, filename, imageType string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filename), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	bi, _ := json.Marshal(buildinfo.BuildInfo{
		Arch: "x86_64", BootMode: "hybrid", ExportName: imageType, ExportFilename: filename, KibVersion: "test",
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Distro: "debian-12", ImageType: imageType,
		Packages:       []buildinfo.Package{{Name: "base-files", Version: "12.4+deb12u5", Arch: "amd64", SHA256: strings.Repeat("0", 64)}},
		ManifestSHA256: strings.Repeat("1", 64),
	})
	if err := os.WriteFile(filepath.Join(dir, "build-info.json"), bi, 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, filename)
}

// TestUploadAzureGCP runs `kib upload` for a vhd and a gce image with
// [upload.azure] and [upload.gcp] in kib.toml, against Azurite,
// fake-gcs-server and the ARM and Compute Engine test servers.
func TestUploadAzureGCP(t *testing.T) {
	blobEP := emulatortest.Azurite(t)
	gcsEP := emulatortest.FakeGCS(t)
	dir := t.TempDir()
	suffix := fmt.Sprintf("%08x", rand.Uint32())

	arm := armtest.New()
	t.Cleanup(arm.Close)
	arm.Groups["kib-rg"] = "westeurope"
	arm.BlobEndpoint = blobEP + "/"
	arm.AccountKey = emulatortest.AzuriteKey
	ca := writeFile(t, dir, "arm-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: arm.Certificate().Raw})))

	gce := computetest.New("kib-images")
	t.Cleanup(gce.Close)
	gce.StorageURL = gcsEP
	key := writeFile(t, dir, "key.json", string(gce.KeyJSON(false)))
	gcs, err := storage.NewClient(context.Background(), option.WithEndpoint(gcsEP), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcs.Close() })
	bucket := "kib-cli-" + suffix
	if err := gcs.Bucket(bucket).Create(context.Background(), "kib-images", nil); err != nil {
		t.Fatal(err)
	}

	config := func(secret string) string {
		return writeFile(t, dir, "kib-"+secret+".toml", fmt.Sprintf(`
[upload.azure]
client_id = %q
client_secret = %q
container = "kib%s"
resource_manager = %q
authority_host = "%s/"
ca_file = %q
poll_interval_seconds = 1

[upload.gcp]
credentials = %q
bucket = %q
storage_endpoint = %q
compute_endpoint = %q
`, arm.ClientID, secret, suffix, arm.URL, arm.URL, ca, key, bucket, gcsEP, gce.URL))
	}
	good := config(arm.ClientSecret)
	vhd := writeImageExport(t, filepath.Join(dir, "vhd"), "disk.vhd", "vhd", emulatortest.FixedVHD())
	gceImg := writeImageExport(t, filepath.Join(dir, "gce"), "image.tar.gz", "gce", emulatortest.GCETarball())
	azOpts := writeFile(t, dir, "azure.json", fmt.Sprintf(`{"tenant_id":%q,"subscription_id":%q,"resource_group":"kib-rg","image_name":"debian-12-cli"}`, arm.Tenant, arm.Subscription))
	gcpOpts := writeFile(t, dir, "gcp.json", `{"region":"europe-west1","image_name":"debian-12-cli"}`)

	out, err := runKib(t, "upload", "--config", good, "--target", "azure", "--options", azOpts, vhd)
	if err != nil {
		t.Fatalf("kib upload azure: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"type": "azure"`) || !strings.Contains(out, `"image_name": "debian-12-cli"`) {
		t.Errorf("azure result:\n%s", out)
	}
	if im := arm.Image("kib-rg", "debian-12-cli"); im == nil || im.HyperVGeneration != "V1" || im.BlobURI != blobEP+"/kib"+suffix+"/debian-12-cli.vhd" {
		t.Errorf("azure image %+v", im)
	}

	// The target defaults to the image type's (gce → gcp).
	out, err = runKib(t, "upload", "--config", good, "--options", gcpOpts, filepath.Dir(gceImg))
	if err != nil {
		t.Fatalf("kib upload gcp: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"type": "gcp"`) || !strings.Contains(out, `"project_id": "kib-images"`) {
		t.Errorf("gcp result:\n%s", out)
	}
	if im := gce.Image("debian-12-cli"); im == nil || im.Source != "https://storage.googleapis.com/"+bucket+"/debian-12-cli.tar.gz" {
		t.Errorf("gce image %+v", im)
	}

	// Refused up front, or with the cloud's own words.
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad options", []string{"--config", good, "--options", writeFile(t, dir, "bad.json", `{"region":"us","image_name":"Not_Valid"}`), gceImg}, "image_name"},
		{"wrong target", []string{"--config", good, "--target", "gcp", "--options", azOpts, vhd}, `"azure" only`},
		{"wrong secret", []string{"--config", config("wrong"), "--options", azOpts, vhd}, "AADSTS7000215"},
		{"half a service principal", []string{"--config", writeFile(t, dir, "half.toml", "[upload.azure]\nclient_id = \"x\"\n"), "--options", azOpts, vhd}, "client_secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runKib(t, append([]string{"upload"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line mentioning %q\n%s", err, tt.want, out)
			}
		})
	}
}
