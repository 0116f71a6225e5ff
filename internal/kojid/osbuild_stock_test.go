package kojid_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojid"
)

// stockComposer is a test server answering as a stock osbuild-composer's
// Cloud API does for Koji composes (composer's cloudapi v2 handlers): an
// OAuth token endpoint (client credentials), POST /compose → 201 {id},
// GET /composes/{id} with image_statuses "building" until the images are
// done, koji_status {build_id} without task_id, manifests and logs. It
// answers the first status request with 503 and rejects the first token
// after one use with 401, as a token that expired in flight.
type stockComposer struct {
	mu        sync.Mutex
	polls     int
	tokens    int
	failFirst bool
	never     bool // never finishes
	fail      bool
	requests  [][]byte
	srv       *httptest.Server
}

func (s *stockComposer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path == "/token" {
		r.ParseForm()
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != "kojid" || r.PostForm.Get("client_secret") != "s3cret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		s.tokens++
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":300}`, s.tokens)
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer tok-") || (auth == "Bearer tok-1" && len(s.requests) > 0 && s.polls > 0) {
		http.Error(w, `{"kind":"Error","code":"IMAGE-BUILDER-COMPOSER-1000","reason":"token expired"}`, http.StatusUnauthorized)
		return
	}
	base := "/api/image-builder-composer/v2/"
	switch {
	case r.Method == "POST" && r.URL.Path == base+"compose":
		body, _ := io.ReadAll(r.Body)
		s.requests = append(s.requests, body)
		w.WriteHeader(201)
		fmt.Fprint(w, `{"href":"/api/image-builder-composer/v2/compose","kind":"ComposeId","id":"1a2b3c4d-0000-4000-8000-000000000001"}`)
	case r.URL.Path == base+"composes/1a2b3c4d-0000-4000-8000-000000000001":
		s.polls++
		switch {
		case s.polls == 1 && s.failFirst:
			http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
		case s.never || s.polls < 4:
			fmt.Fprint(w, `{"kind":"ComposeStatus","id":"1a2b3c4d-0000-4000-8000-000000000001","status":"pending","image_status":{"status":"building"},"image_statuses":[{"status":"building"}],"koji_status":{"build_id":42}}`)
		case s.fail:
			fmt.Fprint(w, `{"kind":"ComposeStatus","status":"failure","image_status":{"status":"failure","error":{"id":10,"reason":"Koji build error","details":"osbuild failed"}},"image_statuses":[{"status":"failure","error":{"id":10,"reason":"Koji build error","details":"osbuild failed"}}],"koji_status":{}}`)
		default:
			fmt.Fprint(w, `{"kind":"ComposeStatus","status":"success","image_status":{"status":"success"},"image_statuses":[{"status":"success"}],"koji_status":{"build_id":42}}`)
		}
	case strings.HasSuffix(r.URL.Path, "/manifests"):
		fmt.Fprint(w, `{"kind":"ComposeManifests","manifests":[{"version":"2","pipelines":[]}]}`)
	case strings.HasSuffix(r.URL.Path, "/logs"):
		fmt.Fprint(w, `{"kind":"ComposeLogs","image_builds":[{"osbuild":"log"}],"koji":{"init":{"build_id":42},"import":{"build_id":42}}}`)
	default:
		http.NotFound(w, r)
	}
}

func TestOSBuildImageStockComposer(t *testing.T) {
	tests := []struct {
		name     string
		sc       *stockComposer
		deadline time.Duration
		want     string
	}{
		{"success", &stockComposer{failFirst: true}, 0, ""},
		{"compose fails", &stockComposer{fail: true}, 0, "Compose failed (id: 1a2b3c4d-0000-4000-8000-000000000001); x86_64 guest-image: Koji build error (osbuild failed)"},
		{"deadline", &stockComposer{never: true}, 300 * time.Millisecond, "did not finish within 300ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := osbSetup(t, false)
			tc.sc.srv = httptest.NewServer(tc.sc)
			defer tc.sc.srv.Close()
			h, err := kojid.NewOSBuildImage(kojid.OSBuildConfig{KojiServer: osbKojiServer, TopURL: "https://koji.example.org/kojifiles", PollMin: 10 * time.Millisecond, PollMax: 50 * time.Millisecond,
				Deadline: tc.deadline, Composer: &kojid.ComposerConfig{Server: tc.sc.srv.URL,
					OAuth: &kojid.OAuthConfig{ClientID: "kojid", ClientSecret: "s3cret", TokenURL: tc.sc.srv.URL + "/token"}}})
			if err != nil {
				t.Fatal(err)
			}
			b.handler = h
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); b.runHost(ctx, t) }()
			defer func() { cancel(); <-done }()

			id := b.submit(t, "Debian-Cloud", "12", "debian-12", "qcow2", "debian-12", []any{"x86_64"}, map[string]any{"skip_tag": true, "release": "1"})
			res, err := b.waitTask(t, id)
			if tc.want != "" {
				var f *koji.Fault
				if !errors.As(err, &f) || !strings.Contains(f.String, tc.want) {
					t.Fatalf("task error %v, want %q", err, tc.want)
				}
			} else if err != nil {
				t.Fatalf("task failed: %v", err)
			} else {
				out, _ := json.Marshal(res)
				if want := `{"composer":{"id":"1a2b3c4d-0000-4000-8000-000000000001","server":"` + tc.sc.srv.URL + `"},"koji":{"build":42}}`; string(out) != want {
					t.Errorf("result %s, want %s", out, want)
				}
				if tc.sc.tokens != 2 {
					t.Errorf("%d tokens fetched, want 2 (one refreshed after a 401)", tc.sc.tokens)
				}
			}
			var req map[string]any
			json.Unmarshal(tc.sc.requests[0], &req)
			ir := req["image_requests"].([]any)[0].(map[string]any)
			if ir["image_type"] != "guest-image" {
				t.Errorf("image_type %v, want the Koji API name qcow2 mapped to guest-image", ir["image_type"])
			}
			if rr := ir["repositories"].([]any)[0].(map[string]any); rr["baseurl"] != "https://koji.example.org/kojifiles/repos/debian-12-build/1/x86_64" {
				t.Errorf("repository %v, want the build tag's repo with the arch", rr)
			}
			st := b.output(t, id, "compose-status.json")
			if st["koji_task_id"] != float64(id) {
				t.Errorf("compose-status.json koji_task_id = %v, want %d", st["koji_task_id"], id)
			}
			if tc.name != "deadline" {
				if _, err := b.user.DownloadTaskOutput(context.Background(), id, "x86_64-guest-image.log.json", io.Discard); err != nil {
					t.Errorf("log not attached: %v", err)
				}
			}
		})
	}
}
