package composer_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
)

// storedQueue serves one stored compose as it is, however damaged.
type storedQueue struct {
	memQueue
	c *jobs.ComposeJobs
}

func (q *storedQueue) Get(context.Context, string, string) (*jobs.ComposeJobs, error) {
	return q.c, nil
}
func (q *storedQueue) ArtifactDir(string) string { return "/nonexistent" }

// A damaged stored record is an error the operator sees, never an empty
// list that looks like a real answer.
func TestDamagedRecordsAreErrors(t *testing.T) {
	const id = "8ee2a8e0-9f32-4fa3-9c16-8b2b2ec3a3a4"
	now := time.Now()
	tests := []struct {
		name, path       string
		result, manifest string
		status           int
	}{
		{"metadata of an unreadable manifest", "/metadata", `{"success":true}`, `{"sources":`, 500},
		{"sboms of an unreadable result", "/sboms", `{"success":tru`, `{}`, 500},
		{"download of a missing image", "/download", `{"success":true,"artifacts":[{"kind":"image","name":"disk.qcow2"}]}`, `{}`, 400},
	}
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &storedQueue{c: &jobs.ComposeJobs{ID: id, Builds: []*jobs.JobInfo{{ID: id, Kind: jobs.KindBuild,
				Result: json.RawMessage(tt.result), Manifest: json.RawMessage(tt.manifest), Queued: now, Started: now, Finished: now}}}}
			h, err := composer.New(composer.Config{Queue: q, Distros: cat})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", base+"/composes/"+id+tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
		})
	}
}

// Job errors quoting a Koji URL with the session reach clients redacted.
func TestResponsesAreRedacted(t *testing.T) {
	const id = "8ee2a8e0-9f32-4fa3-9c16-8b2b2ec3a3a4"
	const key = "1-Ohvx8Qe7aZsK2mP"
	now := time.Now()
	result := `{"job_error":{"id":10,"reason":"image build failed","details":"Post \"https://koji.example.org/kojihub?session-id=1&session-key=` + key + `\": connection refused"}}`
	q := &storedQueue{c: &jobs.ComposeJobs{ID: id, Builds: []*jobs.JobInfo{{ID: id, Kind: jobs.KindBuild,
		Result: json.RawMessage(result), Queued: now, Started: now, Finished: now}}}}
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	h, err := composer.New(composer.Config{Queue: q, Distros: cat})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", "/logs"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", base+"/composes/"+id+path, nil))
		if rec.Code != 200 || strings.Contains(rec.Body.String(), key) || !strings.Contains(rec.Body.String(), "session-key=REDACTED") {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}
