package jobs_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

// fastConfig is a queue configuration whose reconciler and retries run
// within milliseconds. The heartbeat timeout leaves room for a loaded
// machine: a live job presumed dead runs twice, which these tests count.
func fastConfig(db, stateDir string, b jobs.Builder, k jobs.KojiImporter) jobs.Config {
	return jobs.Config{Database: db, StateDir: stateDir, Workers: 2, Builder: b, Koji: k,
		RetryDelay: 10 * time.Millisecond, InitWatch: 10 * time.Millisecond,
		Heartbeat: 20 * time.Millisecond, HeartbeatTimeout: 2 * time.Second}
}

// openQueue opens and starts a queue without registering cleanup; the
// caller stops it.
func openQueue(t *testing.T, cfg jobs.Config) *jobs.Queue {
	t.Helper()
	q, err := jobs.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return q
}

// waitBuilds waits until b has started n builds.
func waitBuilds(t *testing.T, b *jobstest.Builder, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for b.Builds() < n {
		if time.Now().After(deadline) {
			t.Fatalf("builds started = %d, want %d", b.Builds(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownDoesNotSpendAttempts stops the service during the build more
// often than a job has attempts; the next start with a working builder
// still finishes the compose and imports the Koji build once.
func TestShutdownDoesNotSpendAttempts(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			db, dir := jobstest.Database(t, backend), t.TempDir()
			koji := &jobstest.KojiRecorder{}
			var id string
			for i := range jobs.MaxAttempts + 1 {
				b := &jobstest.Builder{Block: true}
				q := openQueue(t, fastConfig(db, dir, b, koji))
				if i == 0 {
					var err error
					if id, err = q.Submit(ctx, kojiCompose("x86_64")); err != nil {
						t.Fatal(err)
					}
				}
				waitBuilds(t, b, 1)
				sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				if err := q.Stop(sctx); err != nil {
					t.Fatalf("stop %d: %v", i, err)
				}
				cancel()
				q.Close()
			}
			b := &jobstest.Builder{}
			q := jobstest.StartQueue(t, fastConfig(db, dir, b, koji))
			st := waitFinal(t, q, "", id)
			if st.Status != jobs.StatusSuccess {
				t.Fatalf("status %s, images %+v; want success", st.Status, st.Images)
			}
			if st.KojiReservation != jobs.KojiImported {
				t.Errorf("reservation = %q, want %q; calls %q", st.KojiReservation, jobs.KojiImported, koji.Calls())
			}
			if got, want := koji.Calls(), []string{"init Debian-Cloud-12-1", "finalize 1001"}; !reflect.DeepEqual(got, want) {
				t.Errorf("koji calls = %q, want %q", got, want)
			}
		})
	}
}

// TestRefundOnEveryPath: a koji-finalize that crashes on every attempt,
// and refunds that fail before they succeed, still give the reservation
// back; meanwhile the compose status and Unrefunded show it.
func TestRefundOnEveryPath(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			tests := []struct {
				name    string
				koji    *jobstest.KojiRecorder
				refunds int
			}{
				{name: "finalize crashes on every attempt", koji: &jobstest.KojiRecorder{FinalizePanics: true}, refunds: 1},
				{name: "refund fails twice", koji: &jobstest.KojiRecorder{FailFinalize: true, FailRefunds: 2}, refunds: 3},
				{name: "finalize crashes and refund fails", koji: &jobstest.KojiRecorder{FinalizePanics: true, FailRefunds: 1}, refunds: 2},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := context.Background()
					cfg := fastConfig(jobstest.Database(t, backend), "", &jobstest.Builder{}, tt.koji)
					q := jobstest.StartQueue(t, cfg)
					id, err := q.Submit(ctx, kojiCompose("x86_64"))
					if err != nil {
						t.Fatal(err)
					}
					st := waitFinal(t, q, "", id)
					if st.Status != jobs.StatusFailure {
						t.Fatalf("status = %s, want failure", st.Status)
					}
					if tt.koji.FailRefunds > 0 && st.KojiReservation == jobs.KojiRefundOwed {
						if n, err := q.Unrefunded(ctx); err != nil || n != 1 {
							t.Errorf("Unrefunded = %d, %v; want 1", n, err)
						}
					}
					deadline := time.Now().Add(30 * time.Second)
					for st.KojiReservation != jobs.KojiRefunded && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
						c, err := q.Get(ctx, "", id)
						if err != nil {
							t.Fatal(err)
						}
						st = jobs.Derive(c)
					}
					if st.KojiReservation != jobs.KojiRefunded {
						t.Fatalf("reservation = %q (%s), want refunded", st.KojiReservation, st.KojiRefundError)
					}
					var refunds int
					for _, c := range tt.koji.Calls() {
						if c == "refund 1001" {
							refunds++
						}
					}
					if refunds != tt.refunds || len(tt.koji.Refunded) != 1 {
						t.Errorf("refund calls = %d (%d succeeded), want %d (1); calls %q", refunds, len(tt.koji.Refunded), tt.refunds, tt.koji.Calls())
					}
					if n, err := q.Unrefunded(ctx); err != nil || n != 0 {
						t.Errorf("Unrefunded = %d, %v; want 0", n, err)
					}
				})
			}
		})
	}
}

// rawDB opens the queue's database beside it.
func rawDB(t *testing.T, backend, dsn, stateDir string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if backend == "sqlite" {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(stateDir, "kib.db")+"?_pragma=busy_timeout(10000)")
	} else {
		db, err = sql.Open("pgx", dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestReconcileSettlesJobsRiverDropped: jobs kib's graph waits for but
// River no longer holds (deleted, or discarded) are settled at start, so
// the compose finishes and its reservation is refunded.
func TestReconcileSettlesJobsRiverDropped(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := jobstest.Database(t, backend), t.TempDir()
			koji := &jobstest.KojiRecorder{}
			// A first service reserves the Koji build and is stopped
			// during the build.
			b := &jobstest.Builder{Block: true}
			q := openQueue(t, fastConfig(dsn, dir, b, koji))
			id, err := q.Submit(ctx, kojiCompose("x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			waitBuilds(t, b, 1)
			for len(koji.Calls()) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			q.Stop(sctx)
			cancel()
			q.Close()
			// Meanwhile River loses the build job (an operator's cleanup).
			db := rawDB(t, backend, dsn, dir)
			if _, err := db.ExecContext(ctx, `DELETE FROM river_job WHERE kind = 'build'`); err != nil {
				t.Fatal(err)
			}
			q = jobstest.StartQueue(t, fastConfig(dsn, dir, &jobstest.Builder{}, koji))
			st := waitFinal(t, q, "", id)
			if st.Status != jobs.StatusFailure || st.Images[0].Error == nil {
				t.Fatalf("status %s, image %+v; want failure with an error", st.Status, st.Images[0])
			}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && len(koji.Refunded) == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			if got, want := koji.Calls(), []string{"init Debian-Cloud-12-1", "refund 1001"}; !reflect.DeepEqual(got, want) {
				t.Errorf("koji calls = %q, want %q", got, want)
			}
		})
	}
}

// TestKilledServiceJobRetried: a job whose process died (its River job
// stays running, its heartbeat stops) runs again long before Lease.
func TestKilledServiceJobRetried(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := jobstest.Database(t, backend), t.TempDir()
			koji := &jobstest.KojiRecorder{}
			q := jobstest.StartQueue(t, jobs.Config{Database: dsn, StateDir: dir, Workers: 0})
			id, err := q.Submit(ctx, kojiCompose("x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			// What a SIGKILLed service leaves: River's job running, kib's
			// job started by a process that no longer heartbeats.
			db := rawDB(t, backend, dsn, dir)
			past := time.Now().Add(-time.Minute)
			if _, err := db.ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = $1 WHERE kind = 'build'`, past); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `UPDATE kib_job SET started_at = $1, heartbeat_at = $1, owner = 'dead:1', attempts = 1 WHERE kind = 'build'`, past.UnixMicro()); err != nil {
				t.Fatal(err)
			}
			cfg := fastConfig(dsn, dir, &jobstest.Builder{}, koji)
			cfg.Lease = 3 * time.Hour
			w := jobstest.StartQueue(t, cfg)
			st := waitFinal(t, w, "", id)
			if st.Status != jobs.StatusSuccess || st.KojiReservation != jobs.KojiImported {
				t.Fatalf("status %s, reservation %q; want success, imported", st.Status, st.KojiReservation)
			}
		})
	}
}

// TestSchemaUpgrade opens a database with the kib tables as kib created
// them before they were versioned, holding an unfinished compose, and
// checks that the upgrade keeps it and the compose finishes.
func TestSchemaUpgrade(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := jobstest.Database(t, backend), t.TempDir()
			// River's tables and a compose, as today's kib leaves them.
			q := jobstest.StartQueue(t, jobs.Config{Database: dsn, StateDir: dir})
			id, err := q.Submit(ctx, kojiCompose("x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			db := rawDB(t, backend, dsn, dir)
			old := jobs.ExportDowngradeToUnversioned(t, db)
			if old != 0 {
				t.Fatalf("downgrade left version %d", old)
			}
			koji := &jobstest.KojiRecorder{}
			w := jobstest.StartQueue(t, fastConfig(dsn, dir, &jobstest.Builder{}, koji))
			var v int
			if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM kib_schema_version`).Scan(&v); err != nil || v != jobs.SchemaVersion() {
				t.Fatalf("schema version %d, %v; want %d", v, err, jobs.SchemaVersion())
			}
			var missing int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kib_job WHERE enqueued = 1 AND river_id IS NULL`).Scan(&missing); err != nil || missing != 0 {
				t.Errorf("%d enqueued jobs without river_id after the upgrade (%v)", missing, err)
			}
			st := waitFinal(t, w, "", id)
			if st.Status != jobs.StatusSuccess || st.KojiReservation != jobs.KojiImported {
				t.Errorf("status %s, reservation %q; want success, imported", st.Status, st.KojiReservation)
			}
			// A second open finds nothing to do.
			w2, err := jobs.Open(ctx, jobs.Config{Database: dsn, StateDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			w2.Close()
			if !strings.HasPrefix(st.ID, id[:8]) {
				t.Errorf("compose id %s, want %s", st.ID, id)
			}
		})
	}
}

// TestLostReservationReported: a koji-init attempt that called CGInitBuild
// and died before storing the answer leaves kib without the token; the
// next attempt, refused by the hub, reports the reservation as stuck
// instead of ending the compose as if nothing were reserved.
func TestLostReservationReported(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := jobstest.Database(t, backend), t.TempDir()
			q := jobstest.StartQueue(t, jobs.Config{Database: dsn, StateDir: dir})
			id, err := q.Submit(ctx, kojiCompose("x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			db := rawDB(t, backend, dsn, dir)
			if _, err := db.ExecContext(ctx, `UPDATE kib_job SET result = '{"reserving":true}', attempts = 1 WHERE kind = 'koji-init'`); err != nil {
				t.Fatal(err)
			}
			koji := &jobstest.KojiRecorder{FailInit: true}
			w := jobstest.StartQueue(t, fastConfig(dsn, dir, &jobstest.Builder{}, koji))
			st := waitFinal(t, w, "", id)
			if st.Status != jobs.StatusFailure || st.KojiReservation != jobs.KojiRefundStuck || !strings.Contains(st.KojiRefundError, "answer was lost") {
				t.Errorf("status %s, reservation %q (%s); want failure, refund-stuck", st.Status, st.KojiReservation, st.KojiRefundError)
			}
			if n, err := w.Unrefunded(ctx); err != nil || n != 1 {
				t.Errorf("Unrefunded = %d, %v; want 1", n, err)
			}
		})
	}
}
