package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

type testBundle struct {
	q       *jobs.Queue
	koji    *jobstest.KojiRecorder
	builder *jobstest.Builder
}

func setup(t *testing.T, backend string, builder *jobstest.Builder, koji *jobstest.KojiRecorder) *testBundle {
	t.Helper()
	q := jobstest.StartQueue(t, jobs.Config{
		Database:   jobstest.Database(t, backend),
		Workers:    2,
		Builder:    builder,
		Koji:       koji,
		RetryDelay: 10 * time.Millisecond,
		InitWatch:  10 * time.Millisecond,
	})
	return &testBundle{q: q, koji: koji, builder: builder}
}

func kojiCompose(arches ...string) *jobs.Compose {
	c := &jobs.Compose{
		Distribution: "debian-12",
		Koji:         &jobs.KojiTarget{Server: "https://koji.example/kojihub", TaskID: 42, Name: "Debian-Cloud", Version: "12", Release: "1"},
		Seed:         7,
	}
	for _, a := range arches {
		c.Images = append(c.Images, jobs.ImageRequest{Arch: a, ImageType: "tar", APIImageType: "tar", Filename: "root.tar.xz", Export: "archive"})
	}
	return c
}

// waitFinal polls until the compose leaves pending.
func waitFinal(t *testing.T, q *jobs.Queue, tenant, id string) *jobs.ComposeStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c, err := q.Get(context.Background(), tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		if st := jobs.Derive(c); st.Status != jobs.StatusPending {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("compose %s did not finish", id)
	return nil
}

func imageStates(st *jobs.ComposeStatus) []string {
	var out []string
	for _, i := range st.Images {
		out = append(out, i.Status)
	}
	return out
}

func TestKojiCompose(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			tests := []struct {
				name       string
				builder    *jobstest.Builder
				koji       *jobstest.KojiRecorder
				retryInit  int32 // attempts after CGInitBuild that fail
				wantStatus string
				wantImages []string
				wantCalls  []string
				wantBuilds int
			}{
				{
					name: "success", builder: &jobstest.Builder{}, koji: &jobstest.KojiRecorder{},
					wantStatus: "success", wantImages: []string{"success", "success"},
					wantCalls: []string{"init Debian-Cloud-12-1", "finalize 1001"}, wantBuilds: 2,
				},
				{
					name: "one image fails", builder: &jobstest.Builder{Fail: map[string]bool{"x86_64": true}}, koji: &jobstest.KojiRecorder{},
					wantStatus: "failure", wantImages: []string{"failure", "success"},
					wantCalls: []string{"init Debian-Cloud-12-1", "refund 1001"}, wantBuilds: 2,
				},
				{
					// The builds run beside koji-init; whether they started
					// before it failed depends on the scheduling.
					name: "init fails", builder: &jobstest.Builder{}, koji: &jobstest.KojiRecorder{FailInit: true},
					wantStatus: "failure", wantImages: []string{"failure", "failure"},
					wantCalls: []string{"init Debian-Cloud-12-1"}, wantBuilds: -1,
				},
				{
					// A build that is still running when koji-init fails
					// is stopped (this one would never end by itself).
					name: "init fails during long builds", builder: &jobstest.Builder{Block: true}, koji: &jobstest.KojiRecorder{FailInit: true, InitDelay: 200 * time.Millisecond},
					wantStatus: "failure", wantImages: []string{"failure", "failure"},
					wantCalls: []string{"init Debian-Cloud-12-1"}, wantBuilds: -1,
				},
				{
					name: "finalize fails", builder: &jobstest.Builder{}, koji: &jobstest.KojiRecorder{FailFinalize: true},
					wantStatus: "failure", wantImages: []string{"success", "success"},
					wantCalls: []string{"init Debian-Cloud-12-1", "finalize 1001", "refund 1001"}, wantBuilds: 2,
				},
				{
					name: "worker dies after init", builder: &jobstest.Builder{}, koji: &jobstest.KojiRecorder{}, retryInit: 1,
					wantStatus: "success", wantImages: []string{"success", "success"},
					wantCalls: []string{"init Debian-Cloud-12-1", "finalize 1001"}, wantBuilds: 2,
				},
				{
					name: "every build attempt crashes", builder: &jobstest.Builder{PanicAlways: true}, koji: &jobstest.KojiRecorder{},
					wantStatus: "failure", wantImages: []string{"failure", "failure"},
					wantCalls: []string{"init Debian-Cloud-12-1", "refund 1001"}, wantBuilds: 2 * jobs.MaxAttempts,
				},
				{
					name: "worker dies during a build", builder: &jobstest.Builder{PanicOnce: true}, koji: &jobstest.KojiRecorder{},
					wantStatus: "success", wantImages: []string{"success", "success"},
					wantCalls: []string{"init Debian-Cloud-12-1", "finalize 1001"}, wantBuilds: 3,
				},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					b := setup(t, backend, tt.builder, tt.koji)
					if tt.retryInit > 0 {
						var n atomic.Int32
						jobs.SetAfterInit(b.q, func() error {
							if n.Add(1) <= tt.retryInit {
								return errors.New("simulated crash after CGInitBuild")
							}
							return nil
						})
					}
					id, err := b.q.Submit(context.Background(), kojiCompose("x86_64", "aarch64"))
					if err != nil {
						t.Fatal(err)
					}
					st := waitFinal(t, b.q, "", id)
					if st.Status != tt.wantStatus {
						t.Errorf("status = %s, want %s", st.Status, tt.wantStatus)
					}
					if got := imageStates(st); !reflect.DeepEqual(got, tt.wantImages) {
						t.Errorf("image statuses = %v, want %v", got, tt.wantImages)
					}
					if got := b.koji.Calls(); !reflect.DeepEqual(got, tt.wantCalls) {
						t.Errorf("koji calls = %q, want %q", got, tt.wantCalls)
					}
					if got := b.builder.Builds(); got != tt.wantBuilds && (tt.wantBuilds >= 0 || got > 2) {
						t.Errorf("builds = %d, want %d", got, tt.wantBuilds)
					}
					if tt.builder.Block && b.builder.Builds() == 0 {
						t.Error("no build ran beside koji-init; the test shows nothing")
					}
					if tt.koji.FailInit {
						for i, img := range st.Images {
							if img.Error == nil || img.Error.ID != jobs.ErrIDKojiFailedDependency {
								t.Errorf("image %d error = %+v, want id %d (Koji init dependency)", i, img.Error, jobs.ErrIDKojiFailedDependency)
							}
						}
					}
					if tt.wantStatus == "success" {
						if st.KojiBuildID != 1001 {
							t.Errorf("koji build id = %d, want 1001", st.KojiBuildID)
						}
						fin := b.koji.Finalized[0]
						var names []string
						for _, img := range fin.Images {
							names = append(names, img.Filename)
							if len(img.Artifacts) != 5 || len(img.Manifest) == 0 {
								t.Errorf("image %s: %d artifacts, manifest %q", img.Filename, len(img.Artifacts), img.Manifest)
							}
						}
						want := []string{"Debian-Cloud-12-1.x86_64.tar.xz", "Debian-Cloud-12-1.aarch64.tar.xz"}
						if !reflect.DeepEqual(names, want) || fin.Token != "token-1" || fin.TaskID != 42 {
							t.Errorf("finalize: files %v token %q task %d; want %v token-1 42", names, fin.Token, fin.TaskID, want)
						}
					}
					if tt.wantStatus == "failure" && tt.name == "one image fails" {
						e := st.Images[0].Error
						if e == nil || e.ID != jobs.ErrIDBuildJob {
							t.Errorf("image error = %+v, want id %d", e, jobs.ErrIDBuildJob)
						}
					}
				})
			}
		})
	}
}

func TestPlainCompose(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			b := setup(t, backend, &jobstest.Builder{}, nil)
			ctx := context.Background()
			c := kojiCompose("x86_64")
			c.Koji = nil
			c.Tenant = "org-1"
			c.Images[0].Targets = []jobs.UploadTarget{{Type: "local"}}
			id, err := b.q.Submit(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			st := waitFinal(t, b.q, "org-1", id)
			if st.Status != "success" || st.Koji || len(st.Images[0].Uploads) != 1 || st.Images[0].Uploads[0].Status != "success" {
				t.Fatalf("status = %+v", st)
			}
			if _, err := b.q.Get(ctx, "org-2", id); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("other tenant: err = %v, want ErrNotFound", err)
			}
			list, err := b.q.List(ctx, "org-1")
			if err != nil || len(list) != 1 || list[0].ID != id {
				t.Errorf("List = %v, %v; want [%s]", list, err, id)
			}
			cj, _ := b.q.Get(ctx, "org-1", id)
			var r jobs.BuildJobResult
			if err := json.Unmarshal(cj.Builds[0].Result, &r); err != nil || len(r.Artifacts) != 5 {
				t.Errorf("result %s: %v", cj.Builds[0].Result, err)
			}
			if err := b.q.Delete(ctx, "org-1", id); err != nil {
				t.Fatal(err)
			}
			if _, err := b.q.Get(ctx, "org-1", id); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("after delete: err = %v", err)
			}
		})
	}
}

// TestKojiStepsBesideOneBuildSlot: with a single build slot, koji-init
// runs on the Koji queue beside the compose's build, so a build that would
// never end by itself is stopped when Koji refuses the build.
func TestKojiStepsBesideOneBuildSlot(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			builder := &jobstest.Builder{Block: true}
			koji := &jobstest.KojiRecorder{FailInit: true, InitDelay: 200 * time.Millisecond}
			q := jobstest.StartQueue(t, jobs.Config{Database: jobstest.Database(t, backend),
				Workers: 1, Builder: builder, Koji: koji, RetryDelay: 10 * time.Millisecond, InitWatch: 10 * time.Millisecond})
			id, err := q.Submit(ctx, kojiCompose("x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			st := waitFinal(t, q, "", id)
			if st.Status != jobs.StatusFailure || st.Images[0].Error == nil || st.Images[0].Error.ID != jobs.ErrIDKojiFailedDependency {
				t.Errorf("status %s, image error %+v; want failure with id %d", st.Status, st.Images[0].Error, jobs.ErrIDKojiFailedDependency)
			}
			if n := builder.Builds(); n != 1 {
				t.Errorf("builds started = %d, want 1 (the build runs while koji-init does)", n)
			}
		})
	}
}
