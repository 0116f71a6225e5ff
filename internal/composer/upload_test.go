package composer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/aws"
	"github.com/kib-project/kib/internal/upload/aws/ec2test"
	"github.com/kib-project/kib/internal/upload/awss3"
	"github.com/kib-project/kib/internal/upload/s3test"
)

// uploadComposeRequest is a Koji compose of an AMI (default target aws) and
// a qcow2 (default target aws.s3), as koji-osbuild sends it with
// --upload-options.
const uploadComposeRequest = `{"distribution":"debian-12",
 "koji":{"name":"Debian-Cloud","version":"12","release":"%s","server":"https://koji.example.org/kojihub","task_id":77},
 "image_requests":[
  {"architecture":"x86_64","image_type":"aws","repositories":[{"baseurl":"http://deb.debian.org/debian"}],
   "upload_options":{"region":"eu-central-1","share_with_accounts":["123456789012"],"snapshot_name":"Debian-Cloud-12-%s"}},
  {"architecture":"x86_64","image_type":"guest-image","repositories":[{"baseurl":"http://deb.debian.org/debian"}],
   "upload_options":{"region":"eu-central-1"}}]}`

// TestUploadTargetsThroughKojiCompose runs a Koji compose with aws and
// aws.s3 targets against the real S3 server, the EC2 test server and the
// kojitest hub: the AMI and the URL come back in the compose status (so in
// compose-status.json) and in the Koji build's upload_target_results; a
// failed upload fails its image with the cloud's message and the build is
// refunded, as composer does.
func TestUploadTargetsThroughKojiCompose(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "kib-images")
	e := &ec2test.Server{AccessKeyID: srv.AccessKey, Steps: 1}
	es := httptest.NewServer(e)
	t.Cleanup(es.Close)
	s3cfg := awss3.Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, StateDir: t.TempDir()}
	s3up, _ := awss3.New(s3cfg)
	awsup, _ := aws.New(aws.Config{S3: s3cfg, EC2Endpoint: es.URL, PollInterval: 5 * time.Millisecond})
	ups := upload.Uploaders{upload.TargetAWS: awsup, upload.TargetAWSS3: s3up}

	for _, backend := range jobstest.Backends {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", backend, fail), func(t *testing.T) {
				release := fmt.Sprintf("%s.%v", backend, fail)
				if fail {
					e.Fail("RegisterImage", ec2test.Fault{Code: "InvalidParameterValue", Message: "Value (x) for parameter bootMode is invalid.", Times: 1})
				}
				hub := kojitest.New(t, kojitest.Options{})
				hub.AddUser("kib", "pw")
				hub.AddContentGenerator("kib", "kib")
				kh := &jobs.KojiHub{Server: "https://koji.example.org/kojihub", Connect: hub.Connector("kib", "pw")}
				b := setupUploads(t, backend, nil, kh, ups)
				p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}
				resp, data := p.send("POST", "/compose", []byte(fmt.Sprintf(uploadComposeRequest, release, release)))
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
				if fail {
					img := images[0]
					e, _ := img["error"].(map[string]any)
					if img["status"] != "failure" || e == nil || !strings.Contains(fmt.Sprint(e), "Value (x) for parameter bootMode is invalid.") {
						t.Errorf("aws image %v, want failure with EC2's message", img)
					}
					if u, _ := img["upload_status"].(map[string]any); u["status"] != "failure" || u["type"] != "aws" {
						t.Errorf("aws upload_status %v", img["upload_status"])
					}
					if file["status"] != "failure" || build.State != koji.BuildFailed {
						t.Errorf("status %v, build state %d: want failure and a refunded build", file["status"], build.State)
					}
					return
				}
				if file["status"] != "success" || build.State != koji.BuildComplete {
					t.Fatalf("status %v (%s), build state %d", file["status"], data, build.State)
				}
				amiStatus, _ := images[0]["upload_status"].(map[string]any)
				opts, _ := amiStatus["options"].(map[string]any)
				ami, _ := opts["ami"].(string)
				if amiStatus["type"] != "aws" || amiStatus["status"] != "success" || opts["region"] != "eu-central-1" || !strings.HasPrefix(ami, "ami-") {
					t.Fatalf("aws upload_status %v", amiStatus)
				}
				if im, ok := e.Image(ami); !ok || im.Name != "Debian-Cloud-12-"+release || im.BootMode != "uefi-preferred" {
					t.Errorf("registered image %+v", im)
				}
				s3Status, _ := images[1]["upload_status"].(map[string]any)
				s3opts, _ := s3Status["options"].(map[string]any)
				link, _ := s3opts["url"].(string)
				if s3Status["type"] != "aws.s3" || s3Status["status"] != "success" || !strings.Contains(link, "X-Amz-Signature") {
					t.Fatalf("aws.s3 upload_status %v", s3Status)
				}
				key := strings.SplitN(strings.SplitN(link, "/"+bucket+"/", 2)[1], "?", 2)[0]
				obj, err := srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
				if err != nil || !strings.HasSuffix(key, ".x86_64.qcow2") || sdkaws.ToInt64(obj.ContentLength) == 0 {
					t.Errorf("object %s: %v", key, err)
				}
				// The Koji metadata carries the same results.
				ti, _ := build.Extra["typeinfo"].(map[string]any)
				imgs, _ := ti["image"].(map[string]any)
				var found []string
				for name, v := range imgs {
					info, _ := v.(map[string]any)
					rs, _ := info["upload_target_results"].([]any)
					for _, r := range rs {
						rm, _ := r.(map[string]any)
						o, _ := rm["options"].(map[string]any)
						found = append(found, fmt.Sprintf("%s %s %v", name, rm["name"], o))
						if rm["osbuild_artifact"] == nil {
							t.Errorf("%s: upload_target_results without osbuild_artifact: %v", name, rm)
						}
					}
				}
				joined := strings.Join(found, "\n")
				if len(found) != 2 || !strings.Contains(joined, "org.osbuild.aws map[ami:"+ami+" region:eu-central-1]") || !strings.Contains(joined, "org.osbuild.aws.s3 map[url:"+link+"]") {
					t.Errorf("upload_target_results:\n%s", joined)
				}
			})
		}
	}
}
