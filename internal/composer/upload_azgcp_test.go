package composer_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/azure"
	"github.com/kib-project/kib/internal/upload/azure/armtest"
	"github.com/kib-project/kib/internal/upload/emulatortest"
	"github.com/kib-project/kib/internal/upload/gcp"
	"github.com/kib-project/kib/internal/upload/gcp/computetest"
)

// azgcpComposeRequest is a Koji compose of a vhd (default target azure)
// and a gce image (default target gcp), with the Cloud API's image type
// names, as koji-osbuild sends it with --upload-options.
const azgcpComposeRequest = `{"distribution":"debian-12",
 "koji":{"name":"Debian-Cloud","version":"12","release":"%[1]s","server":"https://koji.example.org/kojihub","task_id":78},
 "image_requests":[
  {"architecture":"x86_64","image_type":"azure","repositories":[{"baseurl":"http://deb.debian.org/debian"}],
   "upload_options":{"tenant_id":"%[2]s","subscription_id":"%[3]s","resource_group":"kib-rg","image_name":"debian-12-%[1]s"}},
  {"architecture":"x86_64","image_type":"gcp","repositories":[{"baseurl":"http://deb.debian.org/debian"}],
   "upload_options":{"region":"europe-west1","bucket":"%[4]s","image_name":"debian-12-%[1]s","share_with_accounts":["group:release@example.com"]}}]}`

// TestAzureGCPUploadsThroughKojiCompose runs a Koji compose with azure and
// gcp targets against Azurite, fake-gcs-server, the ARM and Compute Engine
// test servers and the kojitest hub: the image names come back in the
// compose status and in the Koji build's upload_target_results; a failed
// image creation fails its image with ARM's message, the GCS staging
// object is still removed, and the build is refunded.
func TestAzureGCPUploadsThroughKojiCompose(t *testing.T) {
	blobEP := emulatortest.Azurite(t)
	gcsEP := emulatortest.FakeGCS(t)
	gcs, err := storage.NewClient(context.Background(), option.WithEndpoint(gcsEP), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcs.Close() })

	for _, backend := range jobstest.Backends {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", backend, fail), func(t *testing.T) {
				suffix := hex.EncodeToString(binary.BigEndian.AppendUint32(nil, rand.Uint32()))
				release := fmt.Sprintf("%s%v%s", backend, fail, suffix)
				arm := armtest.New()
				t.Cleanup(arm.Close)
				arm.Groups["kib-rg"] = "westeurope"
				arm.BlobEndpoint, arm.AccountKey = blobEP+"/", emulatortest.AzuriteKey
				if fail {
					arm.ImageFault = &armtest.Fault{Code: "InvalidParameter", Message: "The specified source blob is not a valid VHD."}
				}
				gce := computetest.New("kib-images")
				t.Cleanup(gce.Close)
				gce.StorageURL = gcsEP
				keyFile := filepath.Join(t.TempDir(), "key.json")
				if err := os.WriteFile(keyFile, gce.KeyJSON(false), 0o600); err != nil {
					t.Fatal(err)
				}
				bucket := "kib-compose-" + suffix
				if err := gcs.Bucket(bucket).Create(context.Background(), "kib-images", nil); err != nil {
					t.Fatal(err)
				}
				ups := upload.Uploaders{
					upload.TargetAzure: azure.New(azure.Config{
						ClientID: arm.ClientID, ClientSecret: arm.ClientSecret, ResourceManager: arm.URL, AuthorityHost: arm.URL + "/",
						Container: "kib" + suffix, HTTPClient: &http.Client{Transport: arm.Client().Transport}, PollFrequency: 10 * time.Millisecond,
					}),
					upload.TargetGCP: gcp.New(gcp.Config{CredentialsFile: keyFile, StorageEndpoint: gcsEP, ComputeEndpoint: gce.URL}),
				}

				hub := kojitest.New(t, kojitest.Options{})
				hub.AddUser("kib", "pw")
				hub.AddContentGenerator("kib", "kib")
				kh := &jobs.KojiHub{Server: "https://koji.example.org/kojihub", Connect: hub.Connector("kib", "pw")}
				b := setupUploads(t, backend, nil, kh, ups)
				b.builder.SetImageData(func(imageType string) []byte {
					switch imageType {
					case "vhd":
						return emulatortest.FixedVHD()
					case "gce":
						return emulatortest.GCETarball()
					}
					return nil
				})
				p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}
				resp, data := p.send("POST", "/compose", []byte(fmt.Sprintf(azgcpComposeRequest, release, arm.Tenant, arm.Subscription, bucket)))
				if resp.StatusCode != 201 {
					t.Fatalf("POST /compose: %d %s", resp.StatusCode, data)
				}
				var created struct{ ID string }
				_ = json.Unmarshal(data, &created)
				var file map[string]any
				deadline := time.Now().Add(90 * time.Second)
				for {
					_, data = p.send("GET", "/composes/"+created.ID, nil)
					var status string
					status, file = composeStatusFile(t, data)
					if status != "pending" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("compose did not finish: %s", data)
					}
					time.Sleep(50 * time.Millisecond)
				}
				images := file["image_statuses"].([]map[string]any)
				reader, _ := koji.New(hub.URL, koji.Options{})
				build, err := reader.GetBuild(context.Background(), "Debian-Cloud-12-"+release)
				if err != nil || build == nil {
					t.Fatalf("build not on the hub: %v", err)
				}
				name := "debian-12-" + release
				// Either way the staging object is gone.
				if _, err := gcs.Bucket(bucket).Object(name + ".tar.gz").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
					t.Errorf("GCS staging object still there: %v", err)
				}
				if fail {
					img := images[0]
					e, _ := img["error"].(map[string]any)
					if img["status"] != "failure" || e == nil || !strings.Contains(fmt.Sprint(e), "The specified source blob is not a valid VHD.") {
						t.Errorf("azure image %v, want failure with ARM's message", img)
					}
					if u, _ := img["upload_status"].(map[string]any); u["status"] != "failure" || u["type"] != "azure" {
						t.Errorf("azure upload_status %v", img["upload_status"])
					}
					if file["status"] != "failure" || build.State != koji.BuildFailed {
						t.Errorf("status %v, build state %d: want failure and a refunded build", file["status"], build.State)
					}
					return
				}
				if file["status"] != "success" || build.State != koji.BuildComplete {
					t.Fatalf("status %v (%s), build state %d", file["status"], data, build.State)
				}
				az, _ := images[0]["upload_status"].(map[string]any)
				if o, _ := az["options"].(map[string]any); az["type"] != "azure" || az["status"] != "success" || o["image_name"] != name || len(o) != 1 {
					t.Errorf("azure upload_status %v", az)
				}
				if im := arm.Image("kib-rg", name); im == nil || im.HyperVGeneration != "V1" || im.Location != "westeurope" ||
					im.BlobURI != blobEP+"/kib"+suffix+"/"+name+".vhd" {
					t.Errorf("azure image %+v, want a V1 (hybrid boot) image from the uploaded blob", im)
				}
				gs, _ := images[1]["upload_status"].(map[string]any)
				if o, _ := gs["options"].(map[string]any); gs["type"] != "gcp" || gs["status"] != "success" || o["image_name"] != name || o["project_id"] != "kib-images" {
					t.Errorf("gcp upload_status %v", gs)
				}
				if im := gce.Image(name); im == nil || im.Source != "https://storage.googleapis.com/"+bucket+"/"+name+".tar.gz" ||
					fmt.Sprint(im.Members["roles/compute.imageUser"]) != "[group:release@example.com]" {
					t.Errorf("gce image %+v", im)
				}
				// The Koji metadata carries the same results.
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
				joined := strings.Join(found, "\n")
				if len(found) != 2 || !strings.Contains(joined, "org.osbuild.azure.image map[image_name:"+name+"]") ||
					!strings.Contains(joined, "org.osbuild.gcp map[image_name:"+name+" project_id:kib-images]") {
					t.Errorf("upload_target_results:\n%s", joined)
				}
			})
		}
	}
}
