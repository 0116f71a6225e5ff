package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

// TestSharedPostgresQueue runs an API-only process and two worker processes
// on one PostgreSQL queue: every compose is built once, with one Koji
// reservation and one import.
func TestSharedPostgresQueue(t *testing.T) {
	ctx := context.Background()
	dsn := jobstest.Database(t, "postgres")
	koji := &jobstest.KojiRecorder{}
	open := func(workers int, b jobs.Builder) *jobs.Queue {
		return jobstest.StartQueue(t, jobs.Config{Database: dsn, Workers: workers, Builder: b, Koji: koji, RetryDelay: 10 * time.Millisecond})
	}
	api := open(0, nil)
	b1, b2 := &jobstest.Builder{}, &jobstest.Builder{}
	open(2, b1)
	open(2, b2)
	const n = 10
	var ids []string
	for range n {
		id, err := api.Submit(ctx, kojiCompose("x86_64"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if st := waitFinal(t, api, "", id); st.Status != jobs.StatusSuccess {
			t.Errorf("compose %s: %+v", id, st)
		}
	}
	if got := b1.Builds() + b2.Builds(); got != n {
		t.Errorf("builds = %d, want %d", got, n)
	}
	inits, finals := 0, 0
	for _, c := range koji.Calls() {
		switch {
		case strings.HasPrefix(c, "init "):
			inits++
		case strings.HasPrefix(c, "finalize "):
			finals++
		default:
			t.Errorf("unexpected call %q", c)
		}
	}
	if inits != n || finals != n {
		t.Errorf("inits = %d, finalizes = %d, want %d each", inits, finals, n)
	}
}
