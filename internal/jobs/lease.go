package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// What became of a Koji compose's reservation (kib_compose.koji_state).
const (
	// KojiImported: CGImport completed the build.
	KojiImported = "imported"
	// KojiRefunded: CGRefundBuild gave the reservation back.
	KojiRefunded = "refunded"
	// KojiRefundOwed: the compose ended without an import and the refund
	// has not succeeded yet; the reconciler retries it with backoff.
	KojiRefundOwed = "refund-owed"
	// KojiRefundStuck: the hub refuses the refund for good (ErrNotRefundable),
	// or a CGInitBuild answer was lost with its process, so kib holds no
	// token for the reservation; an operator has to look at the build.
	KojiRefundStuck = "refund-stuck"
)

// ErrNotRefundable, wrapped in a KojiImporter's Refund error, means the hub
// will never accept the refund (the build is not BUILDING any more, and not
// failed or canceled either): retrying is useless.
var ErrNotRefundable = errors.New("koji build cannot be refunded")

// kojiSettlement is a change of kib_compose.koji_state.
type kojiSettlement struct {
	State string
	// Err is why a refund is owed.
	Err string
	// Attempted is true when a refund call failed (it counts for the
	// backoff).
	Attempted bool
}

func initResult(c *ComposeJobs) InitResult {
	var ir InitResult
	if c.Init != nil && len(c.Init.Result) > 0 {
		_ = json.Unmarshal(c.Init.Result, &ir)
	}
	return ir
}

// setKojiState records s for compose id.
func setKojiState(ctx context.Context, tx dbtx, id string, s *kojiSettlement, backoff func(int) time.Duration) error {
	var err error
	switch s.State {
	case KojiRefundOwed:
		n := 0
		if s.Attempted {
			n = 1
		}
		_, err = tx.ExecContext(ctx, `UPDATE kib_compose SET koji_state = $1, refund_error = $2, refund_attempts = $3, refund_next_at = $4 WHERE id = $5`,
			s.State, s.Err, n, micros(time.Now().Add(backoff(n))), id)
	default:
		_, err = tx.ExecContext(ctx, `UPDATE kib_compose SET koji_state = $1, refund_error = $2 WHERE id = $3`, s.State, nullString(s.Err), id)
	}
	if err != nil {
		return fmt.Errorf("recording Koji settlement of %s: %w", id, err)
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// refundBackoff is the wait before refund attempt n+1: RetryDelay doubled
// per failed attempt, at most 15 minutes. The reservation token stays
// valid until the build is refunded or imported, so a late retry still
// works; one that finds the build already failed counts as done (KojiHub).
func (q *Queue) refundBackoff(failed int) time.Duration {
	if failed == 0 {
		return 0
	}
	d := q.cfg.RetryDelay
	for i := 1; i < failed && d < 15*time.Minute; i++ {
		d *= 2
	}
	return min(d, 15*time.Minute)
}

// heartbeat keeps job id's lease while it runs: every Heartbeat it stamps
// heartbeat_at, so that the reconciler of another (or a restarted) process
// can tell a running job from one whose process died. Call the returned
// function when the attempt ends.
func (q *Queue) heartbeat(ctx context.Context, id string) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(q.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := q.db.ExecContext(ctx, `UPDATE kib_job SET heartbeat_at = $1 WHERE id = $2 AND owner = $3`, micros(time.Now()), id, q.owner); err != nil && ctx.Err() == nil {
				q.log.Warn("job heartbeat", "job", id, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// reconcileLoop runs Reconcile at start and then every Heartbeat until ctx
// ends.
func (q *Queue) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(q.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := q.Reconcile(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn("reconciling jobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile brings kib's job graph and River's jobs back in line and
// settles what the graph owes outside. It is run by every process that
// runs jobs, at start and every Heartbeat:
//   - a running job whose process stopped heartbeating for HeartbeatTimeout
//     (it was killed) is made available again, so it is retried within a
//     minute instead of after Lease;
//   - a job River no longer holds (completed, discarded or cancelled by
//     River, or deleted) but kib's graph still waits for is settled as
//     failed, so its compose finishes and its Koji reservation is refunded;
//   - refunds owed are retried with backoff.
func (q *Queue) Reconcile(ctx context.Context) error {
	rows, err := q.db.QueryContext(ctx, `SELECT id, river_id, heartbeat_at FROM kib_job WHERE finished_at IS NULL AND enqueued = 1`)
	if err != nil {
		return fmt.Errorf("listing unfinished jobs: %w", err)
	}
	type open struct {
		id    string
		river sql.NullInt64
		beat  sql.NullInt64
	}
	var jobs []open
	for rows.Next() {
		var o open
		if err := rows.Scan(&o.id, &o.river, &o.beat); err != nil {
			rows.Close()
			return err
		}
		jobs = append(jobs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var errs []error
	for _, o := range jobs {
		if !o.river.Valid {
			errs = append(errs, q.settle(ctx, o.id, "River holds no job for it"))
			continue
		}
		rj, err := q.client.JobGet(ctx, o.river.Int64)
		if errors.Is(err, river.ErrNotFound) {
			errs = append(errs, q.settle(ctx, o.id, "River no longer holds it"))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: River job %d: %w", o.id, o.river.Int64, err))
			continue
		}
		switch rj.State {
		case rivertype.JobStateCompleted, rivertype.JobStateDiscarded, rivertype.JobStateCancelled:
			// Give a worker that has just stored the result and is
			// completing the River job no chance to race: settle re-checks
			// finished_at under the compose lock.
			errs = append(errs, q.settle(ctx, o.id, fmt.Sprintf("River %s it", rj.State)))
		case rivertype.JobStateRunning:
			stale := time.Now().Add(-q.cfg.HeartbeatTimeout)
			if rj.AttemptedAt != nil && rj.AttemptedAt.After(stale) {
				continue
			}
			if o.beat.Valid && time.UnixMicro(o.beat.Int64).After(stale) {
				continue
			}
			errs = append(errs, q.reclaim(ctx, o.id, rj))
		}
	}
	errs = append(errs, q.retryRefunds(ctx))
	return errors.Join(errs...)
}

// reclaim makes a running River job whose process died available again.
// River's own rescuer would do so only after Lease; River has no call for
// it, so this is the one place kib writes River's table.
func (q *Queue) reclaim(ctx context.Context, id string, rj *rivertype.JobRow) error {
	r, err := q.db.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE id = $1 AND state = 'running'`, rj.ID)
	if err != nil {
		return fmt.Errorf("job %s: reclaiming River job %d: %w", id, rj.ID, err)
	}
	if n, _ := r.RowsAffected(); n > 0 {
		q.log.Warn("job's process stopped heartbeating; running it again", "job", id, "kind", rj.Kind, "attempt", rj.Attempt, "attempted_by", rj.AttemptedBy)
	}
	return nil
}

// settle finishes job id as failed because River will not run it again.
func (q *Queue) settle(ctx context.Context, id, why string) error {
	j, err := getJob(ctx, q.db, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	c, err := loadCompose(ctx, q.db, "", j.ComposeID, true)
	if err != nil {
		return err
	}
	q.log.Warn("settling a job River no longer runs", "job", id, "kind", j.Kind, "why", why)
	return q.storeResult(ctx, j, lastAttemptFailure(j, c, fmt.Errorf("%s: %w", why, ErrRetry)))
}

// retryRefunds retries the refunds owed whose backoff has passed. A refund
// is claimed (its next attempt pushed back) before the call, so processes
// sharing the queue do not refund the same build at once.
func (q *Queue) retryRefunds(ctx context.Context) error {
	if q.cfg.Koji == nil {
		return nil
	}
	now := micros(time.Now())
	rows, err := q.db.QueryContext(ctx, `SELECT id, refund_attempts FROM kib_compose WHERE koji_state = $1 AND (refund_next_at IS NULL OR refund_next_at <= $2)`, KojiRefundOwed, now)
	if err != nil {
		return fmt.Errorf("listing refunds owed: %w", err)
	}
	type owed struct {
		id       string
		attempts int
	}
	var list []owed
	for rows.Next() {
		var o owed
		if err := rows.Scan(&o.id, &o.attempts); err != nil {
			rows.Close()
			return err
		}
		list = append(list, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var errs []error
	for _, o := range list {
		claim, err := q.db.ExecContext(ctx, `UPDATE kib_compose SET refund_next_at = $1 WHERE id = $2 AND koji_state = $3 AND refund_attempts = $4`,
			micros(time.Now().Add(q.cfg.HeartbeatTimeout)), o.id, KojiRefundOwed, o.attempts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n, _ := claim.RowsAffected(); n == 0 {
			continue
		}
		errs = append(errs, q.refundOwed(ctx, o.id, o.attempts))
	}
	return errors.Join(errs...)
}

func (q *Queue) refundOwed(ctx context.Context, id string, attempts int) error {
	c, err := loadCompose(ctx, q.db, "", id, true)
	if err != nil {
		return err
	}
	var a finalizeArgs
	if err := json.Unmarshal(c.Finalize.Args, &a); err != nil {
		return fmt.Errorf("compose %s: finalize args: %w", id, err)
	}
	ir := initResult(c)
	err = q.cfg.Koji.Refund(ctx, &KojiRefundArgs{Server: a.Koji.Server, BuildID: ir.BuildID, Token: ir.Token})
	switch {
	case err == nil:
		q.log.Info("refunded Koji build", "compose", id, "build_id", ir.BuildID, "attempt", attempts+1)
		_, err = q.db.ExecContext(ctx, `UPDATE kib_compose SET koji_state = $1, refund_error = NULL, refund_attempts = $2 WHERE id = $3`, KojiRefunded, attempts+1, id)
		return err
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, ErrNotRefundable):
		q.log.Error("Koji build cannot be refunded", "compose", id, "build_id", ir.BuildID, "err", err)
		_, err = q.db.ExecContext(ctx, `UPDATE kib_compose SET koji_state = $1, refund_error = $2, refund_attempts = $3 WHERE id = $4`, KojiRefundStuck, err.Error(), attempts+1, id)
		return err
	default:
		next := q.refundBackoff(attempts + 1)
		q.log.Warn("refunding Koji build failed; will retry", "compose", id, "build_id", ir.BuildID, "attempt", attempts+1, "next", next, "err", err)
		_, err = q.db.ExecContext(ctx, `UPDATE kib_compose SET refund_error = $1, refund_attempts = $2, refund_next_at = $3 WHERE id = $4`,
			err.Error(), attempts+1, micros(time.Now().Add(next)), id)
		return err
	}
}

// Unrefunded counts Koji reservations of finished composes that are
// neither imported nor refunded (owed or stuck).
func (q *Queue) Unrefunded(ctx context.Context) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kib_compose WHERE koji_state IN ($1, $2)`, KojiRefundOwed, KojiRefundStuck).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting unrefunded reservations: %w", err)
	}
	return n, nil
}
