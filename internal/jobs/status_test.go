package jobs_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
)

func TestDerive(t *testing.T) {
	now := time.Now()
	type state struct {
		started, finished bool
		result            string
		canceled          bool
	}
	job := func(id, kind string, deps []string, s state) *jobs.JobInfo {
		j := &jobs.JobInfo{ID: id, Kind: kind, Deps: deps, Canceled: s.canceled, Args: json.RawMessage(`{"image":{"targets":[{"type":"local"}]}}`)}
		if s.started {
			j.Started = now
		}
		if s.finished {
			j.Finished = now
		}
		if s.result != "" {
			j.Result = json.RawMessage(s.result)
		}
		return j
	}
	var (
		queued   = state{}
		running  = state{started: true}
		initOK   = state{started: true, finished: true, result: `{"build_id":42,"token":"t","koji_error":""}`}
		initFail = state{started: true, finished: true, result: `{"build_id":0,"token":"","koji_error":"","job_error":{"id":15,"reason":"Koji init error"}}`}
		buildOK  = state{started: true, finished: true, result: `{"success":true}`}
		buildBad = state{started: true, finished: true, result: `{"success":false,"job_error":{"id":10,"reason":"image build failed"}}`}
		finOK    = state{started: true, finished: true, result: `{"koji_error":""}`}
		finBad   = state{started: true, finished: true, result: `{"koji_error":"","job_error":{"id":13,"reason":"at least one job dependency failed"}}`}
	)
	koji := func(init, b0, b1, fin state) *jobs.ComposeJobs {
		return &jobs.ComposeJobs{
			ID: "f", Koji: true,
			Init:     job("i", jobs.KindKojiInit, nil, init),
			Builds:   []*jobs.JobInfo{job("b0", jobs.KindBuild, []string{"i"}, b0), job("b1", jobs.KindBuild, []string{"i"}, b1)},
			Finalize: job("f", jobs.KindKojiFinalize, []string{"i", "b0", "b1"}, fin),
		}
	}
	plain := func(b state) *jobs.ComposeJobs {
		return &jobs.ComposeJobs{ID: "b", Builds: []*jobs.JobInfo{job("b", jobs.KindBuild, nil, b)}}
	}
	tests := []struct {
		name        string
		c           *jobs.ComposeJobs
		status      string
		images      []string
		buildID     uint64
		uploads     string
		firstErrID  int
		errDetailed bool
	}{
		{"koji queued", koji(queued, queued, queued, queued), "pending", []string{"pending", "pending"}, 0, "pending", 0, false},
		{"koji init running", koji(running, queued, queued, queued), "pending", []string{"pending", "pending"}, 0, "pending", 0, false},
		{"koji building", koji(initOK, running, queued, queued), "pending", []string{"building", "pending"}, 42, "running", 0, false},
		// Composer's quirk, kept: a Koji compose's upload statuses follow
		// the finalize job's error, which is not there yet.
		{"image failed, finalize not done: still pending", koji(initOK, buildBad, running, queued), "pending", []string{"failure", "building"}, 42, "success", 10, false},
		{"image failed, finalize done", koji(initOK, buildBad, buildOK, finBad), "failure", []string{"failure", "success"}, 42, "failure", 10, false},
		{"init failed", koji(initFail, queued, queued, queued), "pending", []string{"failure", "failure"}, 0, "pending", 13, true},
		{"init failed, all done", koji(initFail, buildBad, buildBad, finBad), "failure", []string{"failure", "failure"}, 0, "failure", 10, false},
		{"koji success", koji(initOK, buildOK, buildOK, finOK), "success", []string{"success", "success"}, 42, "success", 0, false},
		{"finalize canceled", koji(initOK, buildOK, buildOK, state{canceled: true}), "failure", []string{"success", "success"}, 42, "success", 0, false},
		{"plain queued", plain(queued), "pending", []string{"pending"}, 0, "pending", 0, false},
		{"plain building", plain(running), "pending", []string{"building"}, 0, "running", 0, false},
		{"plain success", plain(buildOK), "success", []string{"success"}, 0, "success", 0, false},
		{"plain failure", plain(buildBad), "failure", []string{"failure"}, 0, "failure", 10, false},
		{"plain canceled", plain(state{canceled: true}), "failure", []string{"failure"}, 0, "failure", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := jobs.Derive(tt.c)
			var images []string
			for _, i := range st.Images {
				images = append(images, i.Status)
			}
			if st.Status != tt.status || !reflect.DeepEqual(images, tt.images) || st.KojiBuildID != tt.buildID {
				t.Errorf("got %s %v build %d, want %s %v build %d", st.Status, images, st.KojiBuildID, tt.status, tt.images, tt.buildID)
			}
			if u := st.Images[0].Uploads; len(u) != 1 || u[0].Status != tt.uploads {
				t.Errorf("uploads = %+v, want one %s", u, tt.uploads)
			}
			e := st.Images[0].Error
			switch {
			case tt.firstErrID == 0 && e != nil:
				t.Errorf("error = %+v, want none", e)
			case tt.firstErrID != 0 && (e == nil || e.ID != tt.firstErrID):
				t.Errorf("error = %+v, want id %d", e, tt.firstErrID)
			case tt.errDetailed && e.Details == nil:
				t.Errorf("error %+v: want the dependency's error in details", e)
			}
		})
	}
}
