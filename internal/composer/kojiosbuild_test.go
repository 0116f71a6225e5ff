package composer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// pluginComposeRequest is the POST /compose body exactly as the koji-osbuild
// builder plugin sends it: Python's json.dumps with its default separators,
// keys in the plugin's order, one image request per arch, each repository
// as {"baseurl", "rhsm": false}.
const pluginComposeRequest = `{"distribution": "debian-12", "koji": {"name": "Debian-Cloud-Base", "version": "12", "release": "20261122.0", "server": "https://koji.example.org/kojihub", "task_id": 123456}, "image_requests": [{"architecture": "x86_64", "image_type": "tar", "repositories": [{"baseurl": "http://deb.debian.org/debian", "rhsm": false}]}, {"architecture": "x86_64", "image_type": "container", "repositories": [{"baseurl": "http://deb.debian.org/debian", "rhsm": false}]}], "customizations": {"packages": ["cloud-init"]}}`

// plugin replays the builder plugin's HTTP requests.
type plugin struct {
	t   *testing.T
	b   *testBundle
	api string
}

func (p *plugin) send(method, path string, body []byte) (*http.Response, []byte) {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, p.api+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	// What python-requests sends, plus the plugin's bearer token.
	req.Header.Set("User-Agent", "python-requests/2.28.2")
	req.Header.Set("Accept-Encoding", "gzip, deflate")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Authorization", "Bearer test-token")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.b.srv.Client().Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp, data
}

// composeStatusFile builds compose-status.json the way the plugin does,
// reading exactly the fields it reads; it fails the test where the plugin
// would raise.
func composeStatusFile(t *testing.T, data []byte) (string, map[string]any) {
	t.Helper()
	var js map[string]any
	if err := json.Unmarshal(data, &js); err != nil {
		t.Fatalf("status body is not JSON: %v: %s", err, data)
	}
	status, ok := js["status"].(string)
	if !ok {
		t.Fatalf("status: missing or not a string: %s", data)
	}
	status = strings.ToLower(status)
	raw, ok := js["image_statuses"].([]any)
	if !ok {
		t.Fatalf("image_statuses: missing or not a list: %s", data)
	}
	var images []map[string]any
	for i, s := range raw {
		m, ok := s.(map[string]any)
		if !ok {
			t.Fatalf("image_statuses[%d]: not an object", i)
		}
		st, ok := m["status"].(string)
		if !ok {
			t.Fatalf("image_statuses[%d].status: missing", i)
		}
		img := map[string]any{"status": strings.ToLower(st)}
		if u, ok := m["upload_status"]; ok {
			img["upload_status"] = u
		}
		if e, ok := m["error"].(map[string]any); ok {
			if _, ok := e["id"].(float64); !ok {
				t.Fatalf("image_statuses[%d].error.id: not a number", i)
			}
			if _, ok := e["reason"].(string); !ok {
				t.Fatalf("image_statuses[%d].error.reason: not a string", i)
			}
			img["error"] = e
		}
		images = append(images, img)
	}
	ks, ok := js["koji_status"].(map[string]any)
	if !ok {
		t.Fatalf("koji_status: missing or not an object: %s", data)
	}
	file := map[string]any{"status": status, "koji_task_id": ks["task_id"], "image_statuses": images}
	if id, ok := ks["build_id"]; ok && id != nil {
		file["koji_build_id"] = id
	}
	return status, file
}

func TestKojiOSBuildPluginReplay(t *testing.T) {
	for _, backend := range jobstest.Backends {
		for _, fail := range []bool{false, true} {
			name := backend + "/success"
			if fail {
				name = backend + "/image-fails"
			}
			t.Run(name, func(t *testing.T) {
				b := setup(t, backend, nil)
				if fail {
					b.builder.Fail = map[string]bool{"x86_64": true}
				}
				p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}

				resp, data := p.send("POST", "/compose", []byte(pluginComposeRequest))
				if resp.StatusCode != 201 {
					t.Fatalf("POST /compose: %d %s (the plugin expects 201)", resp.StatusCode, data)
				}
				var created map[string]any
				if err := json.Unmarshal(data, &created); err != nil {
					t.Fatal(err)
				}
				cid, ok := created["id"].(string)
				if !ok || cid == "" {
					t.Fatalf("POST /compose: no id: %s", data)
				}

				var file map[string]any
				var status string
				deadline := time.Now().Add(60 * time.Second)
				for {
					resp, data := p.send("GET", "/composes/"+cid, nil)
					if resp.StatusCode != 200 {
						t.Fatalf("GET /composes/%s: %d %s", cid, resp.StatusCode, data)
					}
					status, file = composeStatusFile(t, data)
					if status == "success" || status == "failure" {
						break
					}
					if status != "pending" {
						t.Fatalf("status %q: the plugin only knows pending, success and failure", status)
					}
					if time.Now().After(deadline) {
						t.Fatal("compose did not finish")
					}
					time.Sleep(20 * time.Millisecond) // the plugin waits 2 s
				}
				images := file["image_statuses"].([]map[string]any)
				if len(images) != 2 {
					t.Fatalf("image_statuses: %d, want 2", len(images))
				}
				if !fail {
					if status != "success" || file["koji_build_id"] != float64(1001) {
						t.Fatalf("compose-status.json = %v", file)
					}
					for i, img := range images {
						if img["status"] != "success" || img["error"] != nil {
							t.Errorf("image %d: %v", i, img)
						}
					}
				} else {
					if status != "failure" {
						t.Fatalf("status = %s, want failure", status)
					}
					for i, img := range images {
						e, _ := img["error"].(map[string]any)
						if img["status"] != "failure" || e == nil || e["id"] != float64(10) {
							t.Errorf("image %d: %v, want failure with error id 10", i, img)
						}
					}
				}

				// Attach files: manifests zipped with the image requests, logs.
				resp, data = p.send("GET", "/composes/"+cid+"/manifests", nil)
				var mans struct {
					Manifests []json.RawMessage `json:"manifests"`
				}
				if resp.StatusCode != 200 || json.Unmarshal(data, &mans) != nil || len(mans.Manifests) != 2 {
					t.Fatalf("GET manifests: %d %s", resp.StatusCode, data)
				}
				for i, m := range mans.Manifests {
					if want := !fail; want == (string(m) == "null") {
						t.Errorf("manifest %d = %s", i, m)
					}
				}
				resp, data = p.send("GET", "/composes/"+cid+"/logs", nil)
				var logs struct {
					ImageBuilds []json.RawMessage `json:"image_builds"`
					Koji        struct {
						Init   json.RawMessage `json:"init"`
						Import json.RawMessage `json:"import"`
					} `json:"koji"`
				}
				if resp.StatusCode != 200 || json.Unmarshal(data, &logs) != nil || len(logs.ImageBuilds) != 2 || logs.Koji.Init == nil || logs.Koji.Import == nil {
					t.Fatalf("GET logs: %d %s", resp.StatusCode, data)
				}
				var initLog map[string]any
				if json.Unmarshal(logs.Koji.Init, &initLog) != nil || initLog["build_id"] != float64(1001) {
					t.Errorf("koji.init = %s", logs.Koji.Init)
				}
				// The plugin uploads this answer to the Koji task, readable
				// by anyone: the reservation token must not be in it.
				if strings.Contains(string(data), "token-1") {
					t.Errorf("GET logs returns the CGInitBuild token: %s", data)
				}
				if resp, data := p.send("GET", "/composes/"+cid, nil); strings.Contains(string(data), "token-1") {
					t.Errorf("GET compose (%d) returns the CGInitBuild token: %s", resp.StatusCode, data)
				}

				calls := b.koji.Calls()
				want := "finalize 1001"
				if fail {
					want = "refund 1001"
				}
				if len(calls) != 2 || calls[0] != "init Debian-Cloud-Base-12-20261122.0" || calls[1] != want {
					t.Errorf("koji calls = %q", calls)
				}
				if !fail {
					fin := b.koji.Finalized[0]
					if fin.TaskID != 123456 || fin.Server != "https://koji.example.org/kojihub" || len(fin.Images) != 2 ||
						fin.Images[0].Filename != "Debian-Cloud-Base-12-20261122.0.x86_64.tar.xz" ||
						fin.Images[1].Filename != "Debian-Cloud-Base-12-20261122.0.x86_64.tar" ||
						!strings.HasPrefix(fin.Directory, "kib-cg/kib-koji-") {
						t.Errorf("finalize args = %+v", fin)
					}
				}
			})
		}
	}
}

// TestKojiOSBuildPluginReplayIntoKojitest replays the plugin's requests
// against kib's API wired to the kojitest hub with the real Koji client: the
// build the plugin is told about is the one on the hub, complete with every
// image, or refunded when an image fails.
func TestKojiOSBuildPluginReplayIntoKojitest(t *testing.T) {
	for _, backend := range jobstest.Backends {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", backend, fail), func(t *testing.T) {
				hub := kojitest.New(t, kojitest.Options{})
				hub.AddUser("kib", "pw")
				hub.AddContentGenerator("kib", "kib")
				// The request names the hub as the plugin's configuration
				// does; the service reaches it at the test hub's address.
				kh := &jobs.KojiHub{Server: "https://koji.example.org/kojihub", Connect: hub.Connector("kib", "pw")}
				b := setupKoji(t, backend, nil, kh)
				if fail {
					b.builder.Fail = map[string]bool{"x86_64": true}
				}
				p := &plugin{t: t, b: b, api: b.srv.URL + "/api/image-builder-composer/v2"}
				resp, data := p.send("POST", "/compose", []byte(pluginComposeRequest))
				if resp.StatusCode != 201 {
					t.Fatalf("POST /compose: %d %s", resp.StatusCode, data)
				}
				var created struct{ ID string }
				json.Unmarshal(data, &created)
				var file map[string]any
				deadline := time.Now().Add(60 * time.Second)
				for {
					_, data := p.send("GET", "/composes/"+created.ID, nil)
					var status string
					status, file = composeStatusFile(t, data)
					if status != "pending" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("compose did not finish")
					}
					time.Sleep(20 * time.Millisecond)
				}
				reader, _ := koji.New(hub.URL, koji.Options{})
				build, err := reader.GetBuild(context.Background(), "Debian-Cloud-Base-12-20261122.0")
				if err != nil || build == nil {
					t.Fatalf("the reserved build is not on the hub: %v", err)
				}
				if id, _ := file["koji_build_id"].(float64); int64(id) != build.ID {
					t.Errorf("compose-status.json koji_build_id %v, hub build %d", file["koji_build_id"], build.ID)
				}
				if fail {
					if file["status"] != "failure" || build.State != koji.BuildFailed {
						t.Errorf("status %v, hub build state %d; want failure and a refunded (FAILED) build", file["status"], build.State)
					}
					return
				}
				if file["status"] != "success" || build.State != koji.BuildComplete {
					t.Fatalf("status %v, hub build state %d; want success and COMPLETE", file["status"], build.State)
				}
				archives, err := reader.ListArchives(context.Background(), build.ID, "image")
				if err != nil || len(archives) != 6 {
					t.Errorf("image archives %d (%v), want 6: two images with manifest and SBOM", len(archives), err)
				}
				ti, _ := build.Extra["typeinfo"].(map[string]any)
				if img, _ := ti["image"].(map[string]any); len(img) != 2 || build.Extra["osbuild_manifest"] == nil {
					t.Errorf("build extra = %v", build.Extra)
				}
			})
		}
	}
}
