package composer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
)

// memQueue is an in-memory stand-in for the queue, so the fuzzer exercises
// only request decoding and validation.
type memQueue struct{ n int }

func (q *memQueue) Submit(context.Context, *jobs.Compose) (string, error) {
	q.n++
	return "8ee2a8e0-9f32-4fa3-9c16-8b2b2ec3a3a4", nil
}
func (q *memQueue) Get(context.Context, string, string) (*jobs.ComposeJobs, error) {
	return nil, jobs.ErrNotFound
}
func (q *memQueue) List(context.Context, string) ([]*jobs.ComposeJobs, error) { return nil, nil }
func (q *memQueue) Delete(context.Context, string, string) error              { return jobs.ErrNotFound }
func (q *memQueue) ArtifactDir(string) string                                 { return "" }

func FuzzComposeRequest(f *testing.F) {
	for _, seed := range []string{
		pluginComposeRequest, kojiBody, `{}`, `[]`, `null`, `{"distribution":"debian-12","image_request":{}}`,
		`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[],"upload_targets":[{"type":"aws","upload_options":{"region":1}}]}}`,
		`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"azure","repositories":[],"upload_options":{"tenant_id":"t","subscription_id":"s","resource_group":"g","hyper_v_generation":"V2"}}}`,
		`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"gcp","repositories":[],"upload_options":{"region":"us","image_name":"a-","share_with_accounts":["user:"]}}}`,
		`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"guest-image","repositories":[{"baseurl":"::"}],"upload_options":{"region":"r"}}}`,
		`{"distribution":"debian-12","customizations":{"users":[{"name":""}],"services":{"masked":["x"]}},"image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`,
	} {
		f.Add(seed)
	}
	cat, err := distro.Load("")
	if err != nil {
		f.Fatal(err)
	}
	h, err := composer.New(composer.Config{Queue: &memQueue{}, Distros: cat})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/image-builder-composer/v2/compose", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusCreated, http.StatusBadRequest:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Code == http.StatusBadRequest && !strings.Contains(rec.Body.String(), `"code":"IMAGE-BUILDER-COMPOSER-`) {
			t.Fatalf("400 without an error body: %s", rec.Body)
		}
	})
}
