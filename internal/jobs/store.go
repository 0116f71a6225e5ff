package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned for a compose that does not exist or belongs to
// another tenant.
var ErrNotFound = errors.New("compose not found")

// ErrRunning is returned when deleting a compose that has not finished.
var ErrRunning = errors.New("compose is running")

// dbtx is what *sql.DB and *sql.Tx have in common.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

type jobRow struct {
	JobInfo
	ComposeID string
	Enqueued  bool
}

const jobCols = `id, compose_id, kind, seq, deps, args, result, manifest, queued_at, started_at, finished_at, canceled, enqueued`

func scanJob(sc interface{ Scan(...any) error }) (*jobRow, error) {
	var j jobRow
	var deps, args string
	var result, man sql.NullString
	var queued int64
	var started, finished sql.NullInt64
	var canceled, enqueued int
	if err := sc.Scan(&j.ID, &j.ComposeID, &j.Kind, &j.Seq, &deps, &args, &result, &man, &queued, &started, &finished, &canceled, &enqueued); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(deps), &j.Deps); err != nil {
		return nil, fmt.Errorf("job %s: deps: %w", j.ID, err)
	}
	j.Args = json.RawMessage(args)
	if result.Valid {
		j.Result = json.RawMessage(result.String)
	}
	if man.Valid {
		j.Manifest = json.RawMessage(man.String)
	}
	j.Queued = time.UnixMicro(queued).UTC()
	j.Started = fromMicros(started)
	j.Finished = fromMicros(finished)
	j.Canceled = canceled != 0
	j.Enqueued = enqueued != 0
	return &j, nil
}

func getJob(ctx context.Context, db dbtx, id string) (*jobRow, error) {
	j, err := scanJob(db.QueryRowContext(ctx, `SELECT `+jobCols+` FROM kib_job WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	return j, err
}

func composeJobs(ctx context.Context, db dbtx, id string) ([]*jobRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+jobCols+` FROM kib_job WHERE compose_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("reading jobs of compose %s: %w", id, err)
	}
	defer rows.Close()
	var out []*jobRow
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// loadCompose reads a compose and its jobs; tenant "" with any=true skips
// the tenant check (workers).
func loadCompose(ctx context.Context, db dbtx, tenant, id string, any bool) (*ComposeJobs, error) {
	var t, kojiState string
	var koji, refundAttempts int
	var created int64
	var refundErr sql.NullString
	// The jobs are read before the compose row: the Koji settlement is
	// stored with koji-finalize's result, so a finished koji-finalize is
	// never seen without it.
	jobs, err := composeJobs(ctx, db, id)
	if err != nil {
		return nil, err
	}
	err = db.QueryRowContext(ctx, `SELECT tenant, koji, created_at, koji_state, refund_attempts, refund_error FROM kib_compose WHERE id = $1`, id).
		Scan(&t, &koji, &created, &kojiState, &refundAttempts, &refundErr)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !any && t != tenant) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	c := &ComposeJobs{ID: id, Tenant: t, Koji: koji != 0, Created: time.UnixMicro(created).UTC(),
		KojiState: kojiState, RefundAttempts: refundAttempts, RefundError: refundErr.String}
	for _, j := range jobs {
		info := j.JobInfo
		switch j.Kind {
		case KindKojiInit:
			c.Init = &info
		case KindBuild:
			c.Builds = append(c.Builds, &info)
		case KindKojiFinalize:
			c.Finalize = &info
		}
	}
	if len(c.Builds) == 0 || (c.Koji && (c.Init == nil || c.Finalize == nil)) {
		return nil, fmt.Errorf("compose %s: incomplete job graph", id)
	}
	return c, nil
}
