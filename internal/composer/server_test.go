package composer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/kib-project/kib/internal/upload"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

const base = "/api/image-builder-composer/v2"

type testBundle struct {
	srv     *httptest.Server
	q       *jobs.Queue
	koji    *jobstest.KojiRecorder
	builder *jobstest.Builder
}

func setup(t *testing.T, backend string, auth composer.Authenticator) *testBundle {
	t.Helper()
	rec := &jobstest.KojiRecorder{}
	b := setupKoji(t, backend, auth, rec)
	b.koji = rec
	return b
}

// setupKoji is setup with the Koji side of Koji composes given.
func setupKoji(t *testing.T, backend string, auth composer.Authenticator, koji jobs.KojiImporter) *testBundle {
	t.Helper()
	return setupUploads(t, backend, auth, koji, nil)
}

// setupUploads is setupKoji with cloud upload targets.
func setupUploads(t *testing.T, backend string, auth composer.Authenticator, koji jobs.KojiImporter, ups upload.Uploaders) *testBundle {
	t.Helper()
	ctx := context.Background()
	b := &testBundle{builder: &jobstest.Builder{}}
	q, err := jobs.Open(ctx, jobs.Config{Database: jobstest.Database(t, backend), StateDir: t.TempDir(), Workers: 2, Builder: b.builder, Koji: koji, RetryDelay: 10 * time.Millisecond, Uploaders: ups})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	h, err := composer.New(composer.Config{Queue: q, Distros: cat, Auth: auth, UploadTargets: ups.Supports, KojiServer: "https://koji.example.org/kojihub", FileRepositories: []string{"/srv/kib-repos"}})
	if err != nil {
		t.Fatal(err)
	}
	b.srv, b.q = httptest.NewServer(validating(t, h)), q
	t.Cleanup(func() {
		b.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
		q.Close()
	})
	return b
}

// validating checks every response against the OpenAPI document.
func validating(t *testing.T, s *composer.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if err := s.ValidateResponse(r.Context(), r, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("response does not match the OpenAPI document: %v", err)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func do(t *testing.T, b *testBundle, method, path, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 && json.Unmarshal(data, &out) != nil {
		out = map[string]any{"raw": string(data)}
	}
	return resp.StatusCode, out
}

const kojiBody = `{"distribution":"debian-12",
 "koji":{"name":"Debian-Cloud","version":"12","release":"1","server":"https://koji.example.org/kojihub","task_id":99},
 "image_requests":[{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian","rhsm":false}]},
                   {"architecture":"x86_64","image_type":"container","repositories":[{"baseurl":"http://deb.debian.org/debian","rhsm":false}]}]}`

func TestErrors(t *testing.T) {
	b := setup(t, "sqlite", nil)
	img := func(extra string) string {
		return `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian"}]` + extra + `}}`
	}
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		code                         string
		details                      string
	}{
		{"unknown route", "GET", "/nope", "", "", 404, "21", ""},
		{"outside base path", "GET", "/api/other", "", "", 404, "21", ""},
		{"wrong method", "PUT", "/compose", "", "", 405, "22", ""},
		{"no content type", "POST", "/compose", "", kojiBody, 415, "3", ""},
		{"wrong content type", "POST", "/compose", "text/plain", kojiBody, 415, "3", ""},
		{"malformed json", "POST", "/compose", "application/json", `{"distribution":`, 400, "20", ""},
		{"unknown field", "POST", "/compose", "application/json", `{"distribution":"debian-12","colour":"red","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "30", "colour"},
		{"missing architecture", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"image_type":"tar","repositories":[]}}`, 400, "30", "architecture"},
		{"koji missing task_id", "POST", "/compose", "application/json", `{"distribution":"debian-12","koji":{"name":"a","version":"1","release":"1","server":"https://k/kojihub"},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "30", "task_id"},
		{"unknown distribution", "POST", "/compose", "application/json", `{"distribution":"fedora-41","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "4", "fedora-41"},
		{"unknown arch", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"s390x","image_type":"tar","repositories":[]}}`, 400, "5", "architecture"},
		{"unknown image type", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"iot-commit","repositories":[]}}`, 400, "6", "image_type"},
		{"no images", "POST", "/compose", "application/json", `{"distribution":"debian-12"}`, 400, "25", ""},
		{"two images without koji", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_requests":[{"architecture":"x86_64","image_type":"tar","repositories":[]},{"architecture":"x86_64","image_type":"container","repositories":[]}]}`, 400, "25", ""},
		{"repo without baseurl", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"mirrorlist":"http://m/list"}]}}`, 400, "7", "repositories[0]"},
		{"check_gpg without key", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://x/debian","check_gpg":true}]}}`, 400, "29", "gpgkey"},
		{"target for another image type", "POST", "/compose", "application/json", img(`,"upload_targets":[{"type":"aws","upload_options":{"region":"eu-west-1","share_with_accounts":[]}}]`), 400, "38", "aws"},
		{"upload type unknown to the schema", "POST", "/compose", "application/json", img(`,"upload_targets":[{"type":"ftp","upload_options":{}}]`), 400, "30", "type"},
		{"s3 options missing region", "POST", "/compose", "application/json", img(`,"upload_options":{"public":true}`), 400, "30", "region"},
		{"target the service has no uploader for", "POST", "/compose", "application/json", img(`,"upload_options":{"region":"eu-west-1"}`), 400, "38", "not configured"},
		{"s3 options unknown field", "POST", "/compose", "application/json", img(`,"upload_options":{"region":"r","bucket_name":"x"}`), 400, "30", "bucket_name"},
		// azure and gcp options are checked by the uploaders' own parsers.
		{"azure options missing tenant_id", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"azure","repositories":[],"upload_options":{"subscription_id":"s","resource_group":"g"}}}`, 400, "30", "tenant_id"},
		{"azure empty resource_group", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"vhd","repositories":[],"upload_options":{"tenant_id":"t","subscription_id":"s","resource_group":" "}}}`, 400, "30", "resource_group"},
		{"azure bad hyper_v_generation", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"azure","repositories":[],"upload_options":{"tenant_id":"t","subscription_id":"s","resource_group":"g","hyper_v_generation":"V3"}}}`, 400, "30", "hyper_v_generation"},
		{"gcp bad image_name", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"gcp","repositories":[],"upload_options":{"region":"us","image_name":"Debian_12"}}}`, 400, "30", "image_name"},
		{"gcp bad share_with_accounts", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"gce","repositories":[],"upload_options":{"region":"us","share_with_accounts":["alice@example.com"]}}}`, 400, "30", "share_with_accounts[0]"},
		{"gcp not served", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"gcp","repositories":[],"upload_options":{"region":"us"}}}`, 400, "38", "gcp"},
		{"unsupported customization", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"fips":{"enabled":true}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "30", "fips"},
		{"customization kib lacks", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"files":[{"path":"/etc/x"}]},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "35", "customizations.files"},
		// What kib cannot do is refused at POST, naming the field.
		{"ignore_ssl", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://x/debian","ignore_ssl":true}]}}`, 400, "42", "repositories[0].ignore_ssl"},
		{"module_hotfixes", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://x/debian","module_hotfixes":true}]}}`, 400, "42", "repositories[0].module_hotfixes"},
		{"gpgkey not a key", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://x/debian","check_gpg":true,"gpgkey":"https://x/key.asc"}]}}`, 400, "42", "repositories[0].gpgkey"},
		{"package set kib lacks", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://x/debian","package_sets":["installer"]}]}}`, 400, "42", "repositories[0].package_sets"},
		{"size of a tar", "POST", "/compose", "application/json", img(`,"size":4294967296`), 400, "42", "image_request.size"},
		{"size too small", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"qcow2","repositories":[],"size":1024}}`, 400, "30", "image_request.size"},
		{"unknown timezone key", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"timezone":{"zone":"UTC"}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "30", "zone"},
		{"unknown locale key", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"locale":{"keymap":"de"}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "30", "keymap"},
		{"bad ntp server", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"timezone":{"ntpservers":["a b"]}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "35", "ntpservers[0]"},
		{"bad keyboard", "POST", "/compose", "application/json", `{"distribution":"debian-12","customizations":{"locale":{"keyboard":"de;rm"}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`, 400, "35", "keyboard"},
		// Upload targets kib does not serve yet are refused, not failed
		// after the build.
		{"aws.s3 not served", "POST", "/compose", "application/json", img(`,"upload_options":{"region":"eu-west-1"}`), 400, "38", "aws.s3"},
		{"aws not served", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"ami","repositories":[],"upload_targets":[{"type":"aws","upload_options":{"region":"eu-west-1","share_with_accounts":[]}}]}}`, 400, "38", "not configured"},
		{"another koji hub", "POST", "/compose", "application/json", strings.Replace(kojiBody, "koji.example.org", "koji.elsewhere.org", 1), 400, "42", "koji.server"},
		// file: repositories only from the allow-listed directory.
		{"file repo", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"file:///etc"}]}}`, 400, "42", "repositories[0].baseurl"},
		{"file repo escaping", "POST", "/compose", "application/json", `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"file:///srv/kib-repos/../../etc"}]}}`, 400, "42", "repositories[0].baseurl"},
		{"bad compose id", "GET", "/composes/not-a-uuid", "", "", 400, "14", ""},
		{"unknown compose", "GET", "/composes/8ee2a8e0-9f32-4fa3-9c16-8b2b2ec3a3a4", "", "", 404, "15", ""},
		{"unknown compose logs", "GET", "/composes/8ee2a8e0-9f32-4fa3-9c16-8b2b2ec3a3a4/logs", "", "", 404, "15", ""},
		{"error id not a number", "GET", "/errors/x", "", "", 400, "16", ""},
		{"error id unknown", "GET", "/errors/9999", "", "", 404, "17", ""},
		{"error page not a number", "GET", "/errors?page=x", "", "", 400, "18", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, b, tt.method, base+strings.TrimPrefix(tt.path, base), tt.ct, tt.body)
			if tt.path == "/api/other" {
				status, body = do(t, b, tt.method, tt.path, tt.ct, tt.body)
			}
			if status != tt.status {
				t.Fatalf("status = %d, want %d; body %v", status, tt.status, body)
			}
			if body["id"] != tt.code || body["code"] != "IMAGE-BUILDER-COMPOSER-"+tt.code || body["kind"] != "Error" ||
				body["href"] != base+"/errors/"+tt.code || body["operation_id"] == "" || body["reason"] == "" {
				t.Fatalf("body = %v, want error %s", body, tt.code)
			}
			if d, _ := json.Marshal(body["details"]); !strings.Contains(string(d), tt.details) {
				t.Errorf("details = %s, want it to mention %q", d, tt.details)
			}
		})
	}
}

func TestPublicDocuments(t *testing.T) {
	b := setup(t, "sqlite", nil)
	status, spec := do(t, b, "GET", base+"/openapi", "", "")
	if status != 200 || spec["openapi"] != "3.0.1" {
		t.Errorf("openapi: %d %v", status, spec["openapi"])
	}
	status, list := do(t, b, "GET", base+"/errors?page=0&size=5", "", "")
	if status != 200 || list["size"] != float64(5) || list["kind"] != "ErrorList" {
		t.Errorf("errors: %d %v", status, list)
	}
	status, e := do(t, b, "GET", base+"/errors/15", "", "")
	if status != 200 || e["reason"] != "Compose with given id not found" {
		t.Errorf("error 15: %d %v", status, e)
	}
	status, d := do(t, b, "GET", base+"/distributions", "", "")
	if _, ok := d["debian-12"]; status != 200 || !ok {
		t.Errorf("distributions: %d %v", status, d)
	}
}

func waitStatus(t *testing.T, b *testBundle, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		status, body := do(t, b, "GET", base+"/composes/"+id, "", "")
		if status != 200 {
			t.Fatalf("status: %d %v", status, body)
		}
		if body["status"] != "pending" {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("compose did not finish")
	return nil
}

func TestPlainComposeDownload(t *testing.T) {
	b := setup(t, "sqlite", nil)
	status, body := do(t, b, "POST", base+"/compose", "application/json",
		`{"distribution":"debian-12","customizations":{"packages":["curl"],"hostname":"h"},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian"}],"upload_targets":[{"type":"local","upload_options":{}}]}}`)
	if status != 201 || body["kind"] != "ComposeId" || body["href"] != base+"/compose" {
		t.Fatalf("POST: %d %v", status, body)
	}
	id := body["id"].(string)
	st := waitStatus(t, b, id)
	if st["status"] != "success" || st["koji_status"] != nil || st["image_statuses"] != nil {
		t.Fatalf("status = %v", st)
	}
	us := st["image_status"].(map[string]any)["upload_status"].(map[string]any)
	if us["type"] != "local" || us["status"] != "success" {
		t.Errorf("upload status = %v", us)
	}
	resp, err := b.srv.Client().Get(b.srv.URL + base + "/composes/" + id + "/download")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(data, []byte("image x86_64")) {
		t.Errorf("download: %d %q", resp.StatusCode, data)
	}
	status, sb := do(t, b, "GET", base+"/composes/"+id+"/sboms", "", "")
	if items, _ := sb["items"].([]any); status != 200 || len(items) != 1 || len(items[0].([]any)) != 1 {
		t.Errorf("sboms: %d %v", status, sb)
	}
	status, md := do(t, b, "GET", base+"/composes/"+id+"/metadata", "", "")
	pkgs, _ := md["packages"].([]any)
	if status != 200 || md["kind"] != "ComposeMetadata" || len(pkgs) != 1 {
		t.Fatalf("metadata: %d %v", status, md)
	}
	if p := pkgs[0].(map[string]any); p["type"] != "deb" || p["name"] != "base-files" || p["version"] != "12.4+deb12u5" || p["release"] != "" {
		t.Errorf("package = %v", p)
	}
	status, lst := do(t, b, "GET", base+"/composes/", "", "")
	if items, _ := lst["items"].([]any); status != 200 || len(items) != 1 {
		t.Errorf("list: %d %v", status, lst)
	}
	if status, body := do(t, b, "DELETE", base+"/composes/"+id, "", ""); status != 200 || body["id"] != id {
		t.Errorf("delete: %d %v", status, body)
	}
	if status, _ := do(t, b, "GET", base+"/composes/"+id, "", ""); status != 404 {
		t.Errorf("after delete: %d", status)
	}
}

// staticTenant authenticates everyone as the tenant in the X-Test-Tenant
// header (a test stand-in for JWT claims).
type staticTenant struct{}

func (staticTenant) Tenant(r *http.Request) (string, error) {
	t := r.Header.Get("X-Test-Tenant")
	if t == "" {
		return "", &composer.Error{Code: composer.ErrUnauthenticated}
	}
	return "org-" + t, nil
}

func TestTenantIsolation(t *testing.T) {
	b := setup(t, "sqlite", staticTenant{})
	call := func(tenant, method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, b.srv.URL+base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tenant != "" {
			req.Header.Set("X-Test-Tenant", tenant)
		}
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, body := call("a", "POST", "/compose", kojiBody)
	if status != 201 {
		t.Fatalf("POST: %d %v", status, body)
	}
	id := body["id"].(string)
	if status, _ := call("a", "GET", "/composes/"+id, ""); status != 200 {
		t.Errorf("own tenant: %d", status)
	}
	if status, e := call("b", "GET", "/composes/"+id, ""); status != 404 || e["id"] != "15" {
		t.Errorf("other tenant: %d %v", status, e)
	}
	if status, e := call("", "GET", "/composes/"+id, ""); status != 401 || e["id"] != "401" {
		t.Errorf("no tenant: %d %v", status, e)
	}
	if status, _ := call("", "GET", "/openapi", ""); status != 200 {
		t.Errorf("openapi is public: %d", status)
	}
	if status, l := call("b", "GET", "/composes/", ""); status != 200 || l["total"] != float64(0) {
		t.Errorf("other tenant's list: %d %v", status, l)
	}
}
