package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kib-project/kib/internal/upload"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/kib-project/kib/internal/artifacts"
)

// Config configures a Queue. Zero values mean the documented defaults.
type Config struct {
	// Database is "" for SQLite at StateDir/kib.db, or a PostgreSQL URL
	// (postgres://...) so that several processes share one queue.
	Database string
	// StateDir keeps the SQLite database and the artifacts. Required.
	StateDir string
	// Workers is the number of builds run at once in this process; 0 makes
	// an insert-only queue (an API server whose jobs run elsewhere).
	Workers int
	// KojiWorkers is the number of Koji steps (koji-init, koji-finalize)
	// run at once beside the builds when Workers > 0. Default 4.
	KojiWorkers int
	// Builder builds images; required when Workers > 0.
	Builder Builder
	// Koji does the Koji calls; required for Koji composes.
	Koji KojiImporter
	// Uploaders send images to their cloud upload targets after the
	// build; a target without one fails the image. Default: none.
	Uploaders upload.Uploaders
	// Lease is how long a job may stay running, heartbeat or not, before
	// River's rescuer takes it over: the backstop behind HeartbeatTimeout.
	// Default 3h.
	Lease time.Duration
	// Heartbeat is how often a running job stamps its lease and how often
	// the reconciler runs (see Queue.Reconcile). Default 10s.
	Heartbeat time.Duration
	// HeartbeatTimeout is how long a running job may go without a
	// heartbeat before its process is presumed dead and the job runs
	// again. Default 40s, so a job of a killed process is retried within a
	// minute.
	HeartbeatTimeout time.Duration
	// RetryDelay is the delay before a failed attempt is retried. Default 5s.
	RetryDelay time.Duration
	// PollInterval is how often idle workers look for new jobs (both
	// backends run River without LISTEN/NOTIFY, so that kib's tables and
	// River's inserts share one database/sql transaction). Default 20ms,
	// which keeps the submit-to-start latency of a plain compose near 20ms.
	PollInterval time.Duration
	// InitWatch is how often a build of a Koji compose checks whether
	// koji-init, which runs beside it, has failed. Default 1s.
	InitWatch time.Duration
	// Artifacts, if set, is the object store that keeps the builds'
	// artifacts (kib serve --artifacts): a build run here is stored there
	// after it ends, a remote worker stores its own. Nil keeps them under
	// StateDir/artifacts.
	Artifacts *artifacts.Store
	// Log receives the queue's log; default discards.
	Log *slog.Logger
	// Observer, if set, is told about job runs (metrics).
	Observer Observer
}

// Observer is told about every finished job attempt.
type Observer interface {
	JobDone(kind string, d time.Duration, failure string)
}

// MaxAttempts is how often a job is tried before it fails for good.
const MaxAttempts = 3

// Queue is the compose job queue: the job graph in kib's tables, execution
// on River.
type Queue struct {
	cfg    Config
	db     *sql.DB
	sqlite bool
	client *river.Client[*sql.Tx]
	log    *slog.Logger
	// owner names this process in kib_job.owner (heartbeats).
	owner string
	// stopLoop ends the reconciler; loopDone is closed when it has.
	stopLoop func()
	loopDone chan struct{}
	// afterInit is a test seam: called after a reservation is stored.
	afterInit func() error
}

// Open connects to the database, creates or upgrades the tables and makes
// the River client. Call Start to run jobs and Close when done.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("jobs: StateDir: required")
	}
	if cfg.Workers > 0 && cfg.Builder == nil {
		return nil, errors.New("jobs: Builder: required when Workers > 0")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3 * time.Hour
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 5 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.KojiWorkers <= 0 {
		cfg.KojiWorkers = 4
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 40 * time.Second
	}
	if cfg.HeartbeatTimeout < 2*cfg.Heartbeat {
		return nil, fmt.Errorf("jobs: HeartbeatTimeout %s: must be at least twice Heartbeat (%s)", cfg.HeartbeatTimeout, cfg.Heartbeat)
	}
	if cfg.InitWatch <= 0 {
		cfg.InitWatch = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("jobs: state dir: %w", err)
	}
	host, _ := os.Hostname()
	q := &Queue{cfg: cfg, log: cfg.Log, owner: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8])}
	var driver riverdriver.Driver[*sql.Tx]
	switch {
	case cfg.Database == "":
		dsn := "file:" + filepath.Join(cfg.StateDir, "kib.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("jobs: opening SQLite: %w", err)
		}
		// SQLite allows one writer; River's SQLite driver wants one
		// connection.
		db.SetMaxOpenConns(1)
		q.db, q.sqlite = db, true
		driver = riversqlite.New(db)
	case strings.HasPrefix(cfg.Database, "postgres://"), strings.HasPrefix(cfg.Database, "postgresql://"):
		db, err := sql.Open("pgx", cfg.Database)
		if err != nil {
			return nil, fmt.Errorf("jobs: opening PostgreSQL: %w", err)
		}
		db.SetMaxOpenConns(max(8, 2*cfg.Workers+4))
		q.db = db
		driver = riverdatabasesql.New(db)
	default:
		return nil, fmt.Errorf("jobs: Database %q: want empty (SQLite) or a postgres:// URL", cfg.Database)
	}
	if err := q.migrate(ctx, driver); err != nil {
		q.db.Close()
		return nil, err
	}
	rc := &river.Config{
		Logger:               cfg.Log.With("component", "river"),
		JobTimeout:           -1,
		RescueStuckJobsAfter: cfg.Lease,
		MaxAttempts:          MaxAttempts,
		RetryPolicy:          fixedRetry(cfg.RetryDelay),
		FetchPollInterval:    cfg.PollInterval,
		FetchCooldown:        min(cfg.PollInterval, 100*time.Millisecond),
	}
	if cfg.Workers > 0 {
		w := river.NewWorkers()
		river.AddWorker(w, &stepWorker[KojiInitJob]{q: q, step: q.kojiInit})
		river.AddWorker(w, &stepWorker[BuildJob]{q: q, step: q.build})
		river.AddWorker(w, &stepWorker[KojiFinalizeJob]{q: q, step: q.kojiFinalize})
		rc.Workers = w
		rc.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: cfg.Workers},
			QueueKoji:          {MaxWorkers: cfg.KojiWorkers},
		}
	}
	client, err := river.NewClient(driver, rc)
	if err != nil {
		q.db.Close()
		return nil, fmt.Errorf("jobs: River client: %w", err)
	}
	q.client = client
	return q, nil
}

func (q *Queue) migrate(ctx context.Context, driver riverdriver.Driver[*sql.Tx]) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: q.log.With("component", "rivermigrate")})
	if err != nil {
		return fmt.Errorf("jobs: River migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("jobs: migrating River tables: %w", err)
	}
	return migrateSchema(ctx, q.db, q.sqlite)
}

// Start runs jobs (when Workers > 0) until Stop, and the reconciler beside
// them (see Reconcile).
func (q *Queue) Start(ctx context.Context) error {
	if q.cfg.Workers == 0 {
		return nil
	}
	if err := q.client.Start(ctx); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	q.stopLoop, q.loopDone = cancel, make(chan struct{})
	go func() {
		defer close(q.loopDone)
		q.reconcileLoop(lctx)
	}()
	return nil
}

// Stop waits for running jobs to finish, or until ctx ends; then it
// cancels them. A cancelled job does not spend an attempt: it runs again
// when a process next starts on the queue (or at once on another process
// sharing it).
func (q *Queue) Stop(ctx context.Context) error {
	if q.cfg.Workers == 0 {
		return nil
	}
	if q.stopLoop != nil {
		q.stopLoop()
		<-q.loopDone
		q.stopLoop = nil
	}
	err := q.client.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return q.client.StopAndCancel(cctx)
	}
	return err
}

// Close closes the database.
func (q *Queue) Close() error { return q.db.Close() }

// ArtifactDir is where the artifacts of a build job are kept.
func (q *Queue) ArtifactDir(jobID string) string {
	return filepath.Join(q.cfg.StateDir, "artifacts", jobID)
}

type fixedRetry time.Duration

func (d fixedRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Duration(d)) }

// Stored job arguments.
type initArgs struct {
	Koji KojiTarget `json:"koji"`
}

type buildArgs struct {
	Distribution string       `json:"distribution"`
	Image        ImageRequest `json:"image"`
	Seed         int64        `json:"seed"`
	KojiFilename string       `json:"koji_filename,omitempty"`
}

type finalizeArgs struct {
	Koji          KojiTarget `json:"koji"`
	Directory     string     `json:"koji_directory"`
	KojiFilenames []string   `json:"koji_filenames"`
	StartTime     int64      `json:"start_time"`
}

// Submit stores a compose as a job graph and enqueues its first jobs. It
// returns the compose id: the id of the graph's last job.
func (q *Queue) Submit(ctx context.Context, c *Compose) (string, error) {
	if len(c.Images) == 0 {
		return "", errors.New("compose has no images")
	}
	now := time.Now()
	type newJob struct {
		id, kind string
		deps     []string
		args     any
	}
	var graph []newJob
	if c.Koji == nil {
		if len(c.Images) != 1 {
			return "", errors.New("a compose without koji has exactly one image")
		}
		graph = append(graph, newJob{id: uuid.NewString(), kind: KindBuild, args: buildArgs{Distribution: c.Distribution, Image: c.Images[0], Seed: c.Seed}})
	} else {
		initID := uuid.NewString()
		graph = append(graph, newJob{id: initID, kind: KindKojiInit, args: initArgs{Koji: *c.Koji}})
		fin := finalizeArgs{Koji: *c.Koji, Directory: "kib-cg/kib-koji-" + uuid.NewString(), StartTime: now.Unix()}
		deps := []string{initID}
		for _, img := range c.Images {
			name := KojiFilename(c.Koji, img.Arch, img.Filename)
			fin.KojiFilenames = append(fin.KojiFilenames, name)
			id := uuid.NewString()
			deps = append(deps, id)
			// The builds do not wait for koji-init: kib uploads nothing
			// before koji-finalize, so the reservation and the builds run
			// side by side, and a build that finds koji-init failed stops.
			graph = append(graph, newJob{id: id, kind: KindBuild, args: buildArgs{Distribution: c.Distribution, Image: img, Seed: c.Seed, KojiFilename: name}})
		}
		graph = append(graph, newJob{id: uuid.NewString(), kind: KindKojiFinalize, deps: deps, args: fin})
	}
	composeID := graph[len(graph)-1].id
	req := c.Request
	if len(req) == 0 {
		req = json.RawMessage("{}")
	}
	koji := 0
	if c.Koji != nil {
		koji = 1
	}
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kib_compose (id, tenant, koji, request, created_at) VALUES ($1, $2, $3, $4, $5)`,
			composeID, c.Tenant, koji, string(req), micros(now)); err != nil {
			return fmt.Errorf("storing compose: %w", err)
		}
		for i, j := range graph {
			deps, _ := json.Marshal(append([]string{}, j.deps...))
			args, err := json.Marshal(j.args)
			if err != nil {
				return fmt.Errorf("encoding job args: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO kib_job (id, compose_id, kind, seq, deps, args, queued_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				j.id, composeID, j.kind, i, string(deps), string(args), micros(now)); err != nil {
				return fmt.Errorf("storing job: %w", err)
			}
		}
		return q.enqueueReady(ctx, tx, composeID)
	})
	if err != nil {
		return "", err
	}
	return composeID, nil
}

func (q *Queue) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// enqueueReady inserts River jobs for the compose's jobs whose dependencies
// have all finished. The caller holds the compose lock (lockCompose) or has
// just created the compose in tx.
func (q *Queue) enqueueReady(ctx context.Context, tx *sql.Tx, composeID string) error {
	jobs, err := composeJobs(ctx, tx, composeID)
	if err != nil {
		return err
	}
	finished := map[string]bool{}
	for _, j := range jobs {
		finished[j.ID] = !j.Finished.IsZero()
	}
	for _, j := range jobs {
		if j.Enqueued {
			continue
		}
		ready := true
		for _, d := range j.Deps {
			ready = ready && finished[d]
		}
		if !ready {
			continue
		}
		var args river.JobArgs
		switch j.Kind {
		case KindKojiInit:
			args = KojiInitJob{JobID: j.ID}
		case KindBuild:
			args = BuildJob{JobID: j.ID}
		case KindKojiFinalize:
			args = KojiFinalizeJob{JobID: j.ID}
		default:
			return fmt.Errorf("job %s: unknown kind %q", j.ID, j.Kind)
		}
		ins, err := q.client.InsertTx(ctx, tx, args, nil)
		if err != nil {
			return fmt.Errorf("enqueueing %s job: %w", j.Kind, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE kib_job SET enqueued = 1, river_id = $1 WHERE id = $2`, ins.Job.ID, j.ID); err != nil {
			return fmt.Errorf("marking job enqueued: %w", err)
		}
	}
	return nil
}

// lockCompose serialises the graph updates of one compose: in PostgreSQL
// the row lock is held until the transaction ends; SQLite has one writer.
func lockCompose(ctx context.Context, tx *sql.Tx, id string) error {
	_, err := tx.ExecContext(ctx, `UPDATE kib_compose SET lock_seq = lock_seq + 1 WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("locking compose %s: %w", id, err)
	}
	return nil
}

// Get returns a compose's jobs; ErrNotFound if it does not exist or belongs
// to another tenant.
func (q *Queue) Get(ctx context.Context, tenant, id string) (*ComposeJobs, error) {
	return loadCompose(ctx, q.db, tenant, id, false)
}

// List returns the tenant's composes, oldest first.
func (q *Queue) List(ctx context.Context, tenant string) ([]*ComposeJobs, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id FROM kib_compose WHERE tenant = $1 ORDER BY created_at, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("listing composes: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*ComposeJobs, 0, len(ids))
	for _, id := range ids {
		c, err := loadCompose(ctx, q.db, tenant, id, false)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Delete removes a finished compose, its jobs and its artifacts.
func (q *Queue) Delete(ctx context.Context, tenant, id string) error {
	c, err := q.Get(ctx, tenant, id)
	if err != nil {
		return err
	}
	if st := Derive(c); st.Status == StatusPending {
		return ErrRunning
	}
	err = q.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM kib_job WHERE compose_id = $1`, id); err != nil {
			return fmt.Errorf("deleting jobs: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM kib_compose WHERE id = $1`, id); err != nil {
			return fmt.Errorf("deleting compose: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range c.Builds {
		if err := os.RemoveAll(q.ArtifactDir(b.ID)); err != nil {
			return fmt.Errorf("deleting artifacts: %w", err)
		}
		if err := q.cfg.Artifacts.DeleteJob(ctx, b.ID); err != nil {
			// The compose is gone already; say what is left behind.
			q.log.Warn("deleting a deleted compose's artifacts from the store failed; they stay there", "compose", id, "job", b.ID, "err", err)
		}
	}
	return nil
}

// Pending counts jobs not yet finished, by kind (queue depth).
func (q *Queue) Pending(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT kind, COUNT(*) FROM kib_job WHERE finished_at IS NULL GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}
