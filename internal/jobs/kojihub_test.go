package jobs_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// TestKojiHubImports runs Koji composes through the queue into the kojitest
// hub with the real client: a success is one imported build with every
// image's files, a failed build leaves the reservation refunded, and a
// compose naming another hub is refused before anything is reserved.
func TestKojiHubImports(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	connect := hub.Connector("kib", "pw")
	reader, _ := koji.New(hub.URL, koji.Options{})
	ctx := context.Background()
	tests := []struct {
		name       string
		builder    *jobstest.Builder
		server     string
		release    string
		wantStatus string
		wantState  int // of the Koji build; -1: no build
		archives   int
	}{
		{"success", &jobstest.Builder{}, hub.URL, "1", jobs.StatusSuccess, koji.BuildComplete, 6},
		{"a build fails", &jobstest.Builder{Fail: map[string]bool{"aarch64": true}}, hub.URL, "2", jobs.StatusFailure, koji.BuildFailed, 0},
		{"other hub", &jobstest.Builder{}, "https://koji.elsewhere.example/kojihub", "3", jobs.StatusFailure, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := jobs.Open(ctx, jobs.Config{Database: jobstest.Database(t, "sqlite"), StateDir: t.TempDir(), Workers: 2,
				Builder: tt.builder, Koji: &jobs.KojiHub{Server: hub.URL, Connect: connect}, RetryDelay: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				q.Stop(sctx)
				q.Close()
			}()
			c := kojiCompose("x86_64", "aarch64")
			c.Koji.Server, c.Koji.Release = tt.server, tt.release
			id, err := q.Submit(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if st := waitFinal(t, q, "", id); st.Status != tt.wantStatus {
				t.Fatalf("status %s, want %s", st.Status, tt.wantStatus)
			}
			b, err := reader.GetBuild(ctx, "Debian-Cloud-12-"+tt.release)
			if tt.wantState < 0 {
				if err == nil && b != nil {
					t.Fatalf("a build was reserved on the hub: %+v", b)
				}
				return
			}
			if err != nil || b == nil {
				t.Fatalf("GetBuild: %+v, %v", b, err)
			}
			if b.State != tt.wantState {
				t.Fatalf("build state %d, want %d", b.State, tt.wantState)
			}
			arch, err := reader.ListArchives(ctx, b.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(arch) != tt.archives {
				t.Errorf("%d archives, want %d (image, manifest and SBOM per arch)", len(arch), tt.archives)
			}
			if tt.wantState == koji.BuildComplete {
				logs, err := reader.GetBuildLogs(ctx, b.ID)
				var names []string
				for _, l := range logs {
					names = append(names, l.Name)
				}
				want := "Debian-Cloud-12-1.aarch64.tar.xz.build.log Debian-Cloud-12-1.x86_64.tar.xz.build.log cg_import.log"
				if err != nil || strings.Join(names, " ") != want {
					t.Errorf("build logs %v, %v; want %s", names, err, want)
				}
			}
		})
	}
}

// TestKojiHubSettlesOnce: a refund or an import whose answer was lost is
// retried without harm: the retry finds the build failed or complete on
// the hub and takes that as done, though the hub no longer accepts the
// token.
func TestKojiHubSettlesOnce(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	kh := &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}
	ctx := context.Background()
	res, err := kh.Init(ctx, &jobs.KojiInitArgs{Server: hub.URL, Name: "n", Version: "1", Release: "1"})
	if err != nil {
		t.Fatal(err)
	}
	ref := &jobs.KojiRefundArgs{Server: hub.URL, BuildID: res.BuildID, Token: res.Token}
	if err := kh.Refund(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := kh.Refund(ctx, ref); err != nil {
		t.Errorf("second refund: %v, want nil (already refunded)", err)
	}
	// A build that was imported cannot be refunded: say so for good.
	res2, err := kh.Init(ctx, &jobs.KojiInitArgs{Server: hub.URL, Name: "n", Version: "1", Release: "2"})
	if err != nil {
		t.Fatal(err)
	}
	hub.SetBuildState(int64(res2.BuildID), koji.BuildComplete)
	err = kh.Refund(ctx, &jobs.KojiRefundArgs{Server: hub.URL, BuildID: res2.BuildID, Token: res2.Token})
	if !errors.Is(err, jobs.ErrNotRefundable) {
		t.Errorf("refund of a complete build: %v, want ErrNotRefundable", err)
	}
}

// TestFinalizeRunsAgainAfterShutdown stops the service while koji-finalize
// waits for CGImport, after the uploads: the next start imports the build
// (the files are uploaded again, into a fresh directory).
func TestFinalizeRunsAgainAfterShutdown(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	ctx := context.Background()
	dsn, dir := jobstest.Database(t, "sqlite"), t.TempDir()
	cfg := jobs.Config{Database: dsn, StateDir: dir, Workers: 2, Builder: &jobstest.Builder{},
		Koji: &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}, RetryDelay: 10 * time.Millisecond}
	hub.Inject(kojitest.Injection{Method: "CGImport", Delay: time.Minute})
	q, err := jobs.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := kojiCompose("x86_64")
	c.Koji.Server = hub.URL
	id, err := q.Submit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(hub.Calls(), "CGImport") {
		if time.Now().After(deadline) {
			t.Fatalf("CGImport not called; hub calls %v", hub.Calls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	q.Stop(sctx)
	cancel()
	q.Close()
	q = jobstest.StartQueue(t, cfg)
	st := waitFinal(t, q, "", id)
	if st.Status != jobs.StatusSuccess || st.KojiReservation != jobs.KojiImported {
		cj, _ := q.Get(ctx, "", id)
		t.Fatalf("status %s, reservation %q; want success, imported; finalize result %s", st.Status, st.KojiReservation, cj.Finalize.Result)
	}
}

// TestLostReservationReclaimed: a koji-init attempt called CGInitBuild and
// died before storing the answer, so the hub holds a reservation kib has no
// token for. The next attempt, refused with "Build is already reserved",
// cancels that reservation as its owner and reserves again: the hub
// recycles the same build, which is imported once.
func TestLostReservationReclaimed(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			hub := kojitest.New(t, kojitest.Options{})
			hub.AddUser("kib", "pw")
			hub.AddContentGenerator("kib", "kib")
			kh := &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}
			ctx := context.Background()
			dsn, dir := jobstest.Database(t, backend), t.TempDir()
			q := jobstest.StartQueue(t, jobs.Config{Database: dsn, StateDir: dir})
			c := kojiCompose("x86_64")
			c.Koji.Server = hub.URL
			id, err := q.Submit(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			// The lost answer: the hub reserved the build, kib kept nothing.
			lost, err := kh.Init(ctx, &jobs.KojiInitArgs{Server: hub.URL, Name: c.Koji.Name, Version: c.Koji.Version, Release: c.Koji.Release})
			if err != nil {
				t.Fatal(err)
			}
			db := rawDB(t, backend, dsn, dir)
			if _, err := db.ExecContext(ctx, `UPDATE kib_job SET result = '{"reserving":true}', attempts = 1 WHERE kind = 'koji-init'`); err != nil {
				t.Fatal(err)
			}
			w := jobstest.StartQueue(t, fastConfig(dsn, dir, &jobstest.Builder{}, kh))
			st := waitFinal(t, w, "", id)
			if st.Status != jobs.StatusSuccess || st.KojiReservation != jobs.KojiImported {
				t.Fatalf("status %s, reservation %q (%s); want success, imported", st.Status, st.KojiReservation, st.KojiRefundError)
			}
			if !slices.Contains(hub.Calls(), "cancelBuild") {
				t.Errorf("hub calls %v: no cancelBuild", hub.Calls())
			}
			cl, err := hub.Connector("kib", "pw")(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, err := cl.GetBuild(ctx, int64(lost.BuildID))
			if err != nil || b.State != koji.BuildComplete {
				t.Fatalf("build %d: %+v, %v; want the lost reservation's build recycled and complete", lost.BuildID, b, err)
			}
			if n, err := w.Unrefunded(ctx); err != nil || n != 0 {
				t.Errorf("Unrefunded = %d, %v; want 0", n, err)
			}
		})
	}
}

// TestReclaimOnlyWhatWasLost: Reclaim cancels nothing that is not provably
// the lost reservation: another user's, one whose build id another job
// holds, a complete build, or no build.
func TestReclaimOnlyWhatWasLost(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddUser("other", "pw")
	hub.AddContentGenerator("kib", "kib", "other")
	kib := &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}
	other := &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("other", "pw")}
	ctx := context.Background()
	nvr := func(r string) *jobs.KojiInitArgs {
		return &jobs.KojiInitArgs{Server: hub.URL, Name: "n", Version: "1", Release: r}
	}
	free := func(uint64) (bool, error) { return false, nil }
	if _, err := other.Init(ctx, nvr("1")); err != nil {
		t.Fatal(err)
	}
	if id, err := kib.Reclaim(ctx, nvr("1"), free); err != nil || id != 0 {
		t.Errorf("another user's reservation: reclaimed %d, %v", id, err)
	}
	res, err := kib.Init(ctx, nvr("2"))
	if err != nil {
		t.Fatal(err)
	}
	held := func(id uint64) (bool, error) { return id == res.BuildID, nil }
	if id, err := kib.Reclaim(ctx, nvr("2"), held); err != nil || id != 0 {
		t.Errorf("a reservation another job holds: reclaimed %d, %v", id, err)
	}
	hub.SetBuildState(int64(res.BuildID), koji.BuildComplete)
	if id, err := kib.Reclaim(ctx, nvr("2"), free); err != nil || id != 0 {
		t.Errorf("a complete build: reclaimed %d, %v", id, err)
	}
	if id, err := kib.Reclaim(ctx, nvr("3"), free); err != nil || id != 0 {
		t.Errorf("no build: reclaimed %d, %v", id, err)
	}
	if _, err := kib.Init(ctx, nvr("4")); err != nil {
		t.Fatal(err)
	}
	if id, err := kib.Reclaim(ctx, nvr("4"), free); err != nil || id == 0 {
		t.Errorf("kib's own lost reservation: reclaimed %d, %v; want its build id", id, err)
	}
	if _, err := kib.Init(ctx, nvr("4")); err != nil {
		t.Errorf("reserving again after the reclaim: %v", err)
	}
}
