package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/kib-project/kib/internal/redact"
)

// KojiInitJob is the River job that reserves a Koji build.
type KojiInitJob struct {
	JobID string `json:"job_id"`
}

// Kind implements river.JobArgs.
func (KojiInitJob) Kind() string { return KindKojiInit }

// InsertOpts puts koji-init on the Koji queue.
func (KojiInitJob) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueKoji} }

// BuildJob is the River job that builds one image.
type BuildJob struct {
	JobID string `json:"job_id"`
}

// Kind implements river.JobArgs.
func (BuildJob) Kind() string { return KindBuild }

// KojiFinalizeJob is the River job that imports a Koji build, or refunds it.
type KojiFinalizeJob struct {
	JobID string `json:"job_id"`
}

// Kind implements river.JobArgs.
func (KojiFinalizeJob) Kind() string { return KindKojiFinalize }

// InsertOpts puts koji-finalize on the Koji queue.
func (KojiFinalizeJob) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueKoji} }

// QueueKoji is the River queue of koji-init and koji-finalize: Koji calls and
// uploads, which run beside the builds (Config.KojiWorkers at once) instead
// of waiting for a build slot, so a Koji compose's reservation and build
// start together even with one build slot.
const QueueKoji = "koji"

type jobIDArgs interface {
	river.JobArgs
	id() string
}

func (a KojiInitJob) id() string     { return a.JobID }
func (a BuildJob) id() string        { return a.JobID }
func (a KojiFinalizeJob) id() string { return a.JobID }

// stepOutput is what a step produces: a result to store. A step returns an
// error only when the attempt should be retried (infrastructure trouble);
// failures of the work itself are results with a job_error.
type stepOutput struct {
	Result   any
	Manifest json.RawMessage
	// Koji, set by koji-finalize, is what became of the reservation.
	Koji *kojiSettlement
}

type stepFunc func(ctx context.Context, j *jobRow, c *ComposeJobs) (*stepOutput, error)

type stepWorker[T jobIDArgs] struct {
	river.WorkerDefaults[T]
	q    *Queue
	step stepFunc
}

var (
	_ river.Worker[KojiInitJob]     = (*stepWorker[KojiInitJob])(nil)
	_ river.Worker[BuildJob]        = (*stepWorker[BuildJob])(nil)
	_ river.Worker[KojiFinalizeJob] = (*stepWorker[KojiFinalizeJob])(nil)
)

// Work runs one attempt of a step and, in one transaction, stores its
// result and enqueues the jobs that became ready.
func (w *stepWorker[T]) Work(ctx context.Context, job *river.Job[T]) error {
	q := w.q
	start := time.Now()
	id := job.Args.id()
	log := q.log.With("job", id, "kind", job.Kind, "attempt", job.Attempt)
	j, err := getJob(ctx, q.db, id)
	if errors.Is(err, ErrNotFound) {
		log.Warn("job vanished (compose deleted)")
		return nil
	}
	if err != nil {
		return err
	}
	if !j.Finished.IsZero() {
		// An earlier attempt stored the result but died before River
		// completed the job: only make sure the graph moves on.
		return q.inTx(ctx, func(tx *sql.Tx) error {
			if err := lockCompose(ctx, tx, j.ComposeID); err != nil {
				return err
			}
			return q.enqueueReady(ctx, tx, j.ComposeID)
		})
	}
	if _, err := q.db.ExecContext(ctx, `UPDATE kib_job SET started_at = $1, attempts = attempts + 1, owner = $2, heartbeat_at = $1 WHERE id = $3`,
		micros(time.Now()), q.owner, id); err != nil {
		return fmt.Errorf("marking job started: %w", err)
	}
	stopBeat := q.heartbeat(ctx, id)
	c, err := loadCompose(ctx, q.db, "", j.ComposeID, true)
	if err != nil {
		stopBeat()
		return err
	}
	log.Info("job started", "compose", j.ComposeID)
	out, err := w.safeStep(ctx, j, c)
	stopBeat()
	// The result is stored even when the process is being stopped: the
	// work is done.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err != nil {
		if ctx.Err() != nil {
			// Shutdown: this attempt does not count. The job is available
			// again at once, to this service's next start or to another
			// process sharing the queue.
			log.Warn("job interrupted by shutdown; it will run again", "err", err)
			if _, err := q.db.ExecContext(sctx, `UPDATE kib_job SET attempts = attempts - 1, owner = NULL, heartbeat_at = NULL WHERE id = $1`, id); err != nil {
				log.Warn("releasing the interrupted job", "err", err)
			}
			q.observe(job.Kind, start, "retry")
			return river.JobSnooze(0)
		}
		if job.Attempt < job.MaxAttempts {
			log.Warn("job attempt failed; it will be retried", "err", err)
			q.observe(job.Kind, start, "retry")
			return err
		}
		// The last attempt: record the failure, so the compose finishes
		// instead of waiting for a job River has given up on.
		log.Error("job failed on its last attempt", "err", err)
		out = lastAttemptFailure(j, c, err)
	}
	if err := q.storeResult(sctx, j, out); err != nil {
		return err
	}
	failure := ""
	if je := decodeError(mustJSON(out.Result)); je != nil {
		failure = fmt.Sprint(je.ID)
	}
	q.observe(job.Kind, start, failure)
	log.Info("job finished", "compose", j.ComposeID, "failure", failure)
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// storeResult finishes job j with out and, in the same transaction,
// records the compose's Koji settlement and enqueues the jobs that became
// ready. A job already finished (by another process, or settled by the
// reconciler) is left as it is.
func (q *Queue) storeResult(ctx context.Context, j *jobRow, out *stepOutput) error {
	res, err := json.Marshal(out.Result)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	var man any
	if len(out.Manifest) > 0 {
		man = string(out.Manifest)
	}
	return q.inTx(ctx, func(tx *sql.Tx) error {
		if err := lockCompose(ctx, tx, j.ComposeID); err != nil {
			return err
		}
		// Errors may quote URLs with credentials: none is stored.
		r, err := tx.ExecContext(ctx, `UPDATE kib_job SET result = $1, manifest = $2, finished_at = $3, owner = NULL, heartbeat_at = NULL WHERE id = $4 AND finished_at IS NULL`,
			redact.String(string(res)), man, micros(time.Now()), j.ID)
		if err != nil {
			return fmt.Errorf("storing result: %w", err)
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return q.enqueueReady(ctx, tx, j.ComposeID)
		}
		if out.Koji != nil {
			if err := setKojiState(ctx, tx, j.ComposeID, out.Koji, q.refundBackoff); err != nil {
				return err
			}
		}
		return q.enqueueReady(ctx, tx, j.ComposeID)
	})
}

// safeStep runs the step, turning a panic into an error (a retry).
func (w *stepWorker[T]) safeStep(ctx context.Context, j *jobRow, c *ComposeJobs) (out *stepOutput, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("job panicked: %v", r)
		}
	}()
	return w.step(ctx, j, c)
}

// lastAttemptFailure is the output of a job whose every attempt failed, or
// that River no longer holds. For koji-finalize it owes the compose's Koji
// reservation a refund.
func lastAttemptFailure(j *jobRow, c *ComposeJobs, err error) *stepOutput {
	je := &JobError{Reason: fmt.Sprintf("job failed %d times: %v", MaxAttempts, err)}
	if errors.Is(err, ErrRetry) {
		je = &JobError{ID: ErrIDJobMissingHeartbeat, Reason: "Workers running this job stopped responding more than 2 times.", Details: err.Error()}
	}
	switch j.Kind {
	case KindKojiInit:
		if je.ID == 0 {
			je.ID = ErrIDKojiInit
		}
		// Keep a stored reservation, so that koji-finalize refunds it.
		var r InitResult
		if len(j.Result) > 0 {
			_ = json.Unmarshal(j.Result, &r)
		}
		r.JobError = je
		return &stepOutput{Result: r}
	case KindKojiFinalize:
		if je.ID == 0 {
			je.ID = ErrIDKojiFinalize
		}
		out := &stepOutput{Result: FinalizeResult{JobError: je}}
		if ir := initResult(c); ir.BuildID != 0 {
			out.Koji = &kojiSettlement{State: KojiRefundOwed, Err: "koji-finalize failed; refund not yet attempted"}
		}
		return out
	default:
		if je.ID == 0 {
			je.ID = ErrIDBuildJob
		}
		return &stepOutput{Result: BuildJobResult{JobError: je}}
	}
}

func (q *Queue) observe(kind string, start time.Time, failure string) {
	if q.cfg.Observer != nil {
		q.cfg.Observer.JobDone(kind, time.Since(start), failure)
	}
}

func (q *Queue) kojiInit(ctx context.Context, j *jobRow, c *ComposeJobs) (*stepOutput, error) {
	var a initArgs
	if err := json.Unmarshal(j.Args, &a); err != nil {
		return &stepOutput{Result: InitResult{JobError: &JobError{ID: ErrIDParsingJobArgs, Reason: "parsing job args: " + err.Error()}}}, nil
	}
	// A reservation stored by an earlier attempt is reused: a retry must not
	// reserve a second build.
	var earlier InitResult
	if len(j.Result) > 0 {
		if json.Unmarshal(j.Result, &earlier) == nil && earlier.BuildID != 0 {
			q.log.Info("reusing Koji reservation of an earlier attempt", "job", j.ID, "build_id", earlier.BuildID)
			return &stepOutput{Result: earlier}, nil
		}
	}
	if q.cfg.Koji == nil {
		return &stepOutput{Result: InitResult{JobError: &JobError{ID: ErrIDInvalidConfig, Reason: "this service has no Koji configured"}}}, nil
	}
	// Mark the call, so that a later attempt knows whether a reservation
	// may have been made whose answer never got stored.
	if _, err := q.db.ExecContext(ctx, `UPDATE kib_job SET result = $1 WHERE id = $2 AND result IS NULL`, `{"reserving":true}`, j.ID); err != nil {
		return nil, fmt.Errorf("marking the Koji reservation: %w", err)
	}
	initArgs := &KojiInitArgs{Server: a.Koji.Server, Name: a.Koji.Name, Version: a.Koji.Version, Release: a.Koji.Release}
	res, err := q.cfg.Koji.Init(ctx, initArgs)
	if err != nil && earlier.Reserving && ctx.Err() == nil && strings.Contains(err.Error(), "already reserved") {
		res, err = q.reclaimReservation(ctx, j, initArgs, err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// An attempt running beside this one (its process was presumed
		// dead) may have stored the reservation meanwhile.
		if cur, gerr := getJob(ctx, q.db, j.ID); gerr == nil && len(cur.Result) > 0 {
			var r InitResult
			if json.Unmarshal(cur.Result, &r) == nil && r.BuildID != 0 {
				return &stepOutput{Result: r}, nil
			}
		}
		out := &stepOutput{Result: InitResult{JobError: &JobError{ID: ErrIDKojiInit, Reason: "Koji init error", Details: err.Error()}}}
		if earlier.Reserving {
			// An earlier attempt called CGInitBuild and died before storing
			// the answer: the hub may hold a reservation kib has no token
			// for. Say so where operators look.
			msg := fmt.Sprintf("an earlier attempt's CGInitBuild answer was lost (its process died); if the hub reserved %s-%s-%s, it stays BUILDING until an administrator cancels it: %v",
				a.Koji.Name, a.Koji.Version, a.Koji.Release, err)
			q.log.Error("Koji reservation possibly lost", "job", j.ID, "err", msg)
			out.Koji = &kojiSettlement{State: KojiRefundStuck, Err: msg}
		}
		return out, nil
	}
	r := InitResult{BuildID: res.BuildID, Token: res.Token}
	b, _ := json.Marshal(r)
	// Store the reservation at once, outside the result transaction, so a
	// retry finds it.
	if _, err := q.db.ExecContext(ctx, `UPDATE kib_job SET result = $1 WHERE id = $2`, string(b), j.ID); err != nil {
		return nil, fmt.Errorf("storing Koji reservation: %w", err)
	}
	if q.afterInit != nil {
		if err := q.afterInit(); err != nil {
			return nil, err
		}
	}
	return &stepOutput{Result: r}, nil
}

// KojiReclaimer is a KojiImporter that can cancel a reservation whose
// CGInitBuild answer was lost with the process that called it.
type KojiReclaimer interface {
	// Reclaim cancels the reservation of args' NVR when it is what a lost
	// CGInitBuild leaves and inUse says no other job holds its build id; it
	// returns the canceled build's id, 0 if it canceled nothing.
	Reclaim(ctx context.Context, args *KojiInitArgs, inUse func(buildID uint64) (bool, error)) (uint64, error)
}

// reclaimReservation handles an earlier attempt's lost CGInitBuild answer: the hub
// holds a reservation kib has no token for, so CGInitBuild fails with
// "Build is already reserved". The reservation is canceled (cancelBuild,
// as its owner) and CGInitBuild called again, which recycles the build.
// Without a reclaimer, or when the reservation is not provably the lost
// one, initErr stands.
func (q *Queue) reclaimReservation(ctx context.Context, j *jobRow, a *KojiInitArgs, initErr error) (*KojiInitResult, error) {
	rc, ok := q.cfg.Koji.(KojiReclaimer)
	if !ok {
		return nil, initErr
	}
	id, err := rc.Reclaim(ctx, a, func(buildID uint64) (bool, error) { return q.reservationHeld(ctx, j.ID, buildID) })
	if err != nil {
		q.log.Warn("reclaiming a lost Koji reservation failed", "job", j.ID, "err", err)
		return nil, initErr
	}
	if id == 0 {
		return nil, initErr
	}
	q.log.Info("canceled the Koji reservation whose CGInitBuild answer was lost; reserving again", "job", j.ID, "build_id", id)
	return q.cfg.Koji.Init(ctx, a)
}

// reservationHeld reports whether a Koji init job other than jobID stored a
// reservation of buildID.
func (q *Queue) reservationHeld(ctx context.Context, jobID string, buildID uint64) (bool, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT result FROM kib_job WHERE kind = $1 AND id <> $2 AND result IS NOT NULL`, KindKojiInit, jobID)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return false, err
		}
		var r InitResult
		if json.Unmarshal(raw, &r) == nil && r.BuildID == buildID {
			return true, nil
		}
	}
	return false, rows.Err()
}

func (q *Queue) build(ctx context.Context, j *jobRow, c *ComposeJobs) (*stepOutput, error) {
	var a buildArgs
	if err := json.Unmarshal(j.Args, &a); err != nil {
		return &stepOutput{Result: BuildJobResult{JobError: &JobError{ID: ErrIDParsingJobArgs, Reason: "parsing job args: " + err.Error()}}}, nil
	}
	r := BuildJobResult{
		Arch: a.Image.Arch, HostOS: "linux", ImageBootMode: a.Image.BootMode,
		ExportName: a.Image.Export, ExportFilename: a.Image.Filename, KojiFilename: a.KojiFilename,
	}
	initFailed := func(je *JobError) (*stepOutput, error) {
		r.JobError = &JobError{ID: ErrIDKojiFailedDependency, Reason: "Koji init job failed", Details: []*JobError{je}}
		return &stepOutput{Result: r}, nil
	}
	if c.Init != nil {
		if je := decodeError(c.Init.Result); je != nil {
			return initFailed(je)
		}
		var stop func()
		ctx, stop = q.watchInit(ctx, c.Init.ID)
		defer stop()
	}
	dir := q.ArtifactDir(j.ID)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing artifact dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("making artifact dir: %w", err)
	}
	res, err := q.cfg.Builder.Build(ctx, &BuildArgs{ComposeID: c.ID, JobID: j.ID, Distribution: a.Distribution, Image: a.Image, Seed: a.Seed, OutputDir: dir})
	if err != nil {
		var ie *initError
		if errors.As(context.Cause(ctx), &ie) {
			return initFailed(ie.je)
		}
		if ctx.Err() != nil || errors.Is(err, ErrRetry) {
			return nil, err
		}
		r.JobError = &JobError{ID: ErrIDBuildJob, Reason: "image build failed", Details: err.Error()}
		return &stepOutput{Result: r}, nil
	}
	r.Artifacts, r.Log = res.Artifacts, res.Log
	if q.cfg.Artifacts != nil {
		// The uploads below read the local files; the result records
		// where the artifacts are kept.
		stored, err := q.storeArtifacts(ctx, j.ID, res.Artifacts)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.JobError = &JobError{ID: ErrIDUploadingImage, Reason: "storing the artifacts failed", Details: err.Error()}
			return &stepOutput{Result: r}, nil
		}
		r.Artifacts = stored
		defer os.RemoveAll(dir)
	}
	var failed []*JobError
	for _, t := range a.Image.Targets {
		tr := TargetResult{Type: t.Type}
		if t.Type != "local" {
			opts, err := q.upload(ctx, j, &a, res, t)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				tr.TargetError = &JobError{ID: ErrIDUploadingImage, Reason: err.Error(), Details: t.Type}
				failed = append(failed, tr.TargetError)
			}
			tr.Options = opts
		}
		r.TargetResults = append(r.TargetResults, tr)
	}
	if len(failed) > 0 {
		r.JobError = &JobError{ID: ErrIDTargetError, Reason: "at least one target failed", Details: failed}
	} else {
		r.Success = true
	}
	return &stepOutput{Result: r, Manifest: res.Manifest}, nil
}

// initError is the cause of a build's cancellation when koji-init failed.
type initError struct{ je *JobError }

func (e *initError) Error() string { return "koji-init failed: " + e.je.Reason }

// watchInit returns a context that is cancelled, with an *initError cause,
// when the koji-init job initID finishes with an error. The build of a Koji
// compose runs beside koji-init; this stops it as soon as Koji refuses the
// build instead of finishing an image nobody can import.
func (q *Queue) watchInit(ctx context.Context, initID string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(q.cfg.InitWatch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			j, err := getJob(ctx, q.db, initID)
			if err != nil {
				continue // the database is busy or gone; the build goes on
			}
			if j.Finished.IsZero() {
				continue
			}
			if je := decodeError(j.Result); je != nil {
				q.log.Info("koji-init failed: stopping the build beside it", "init", initID, "reason", je.Reason)
				cancel(&initError{je: je})
			}
			return
		}
	}()
	return ctx, func() { cancel(nil) }
}

func (q *Queue) kojiFinalize(ctx context.Context, j *jobRow, c *ComposeJobs) (*stepOutput, error) {
	var a finalizeArgs
	if err := json.Unmarshal(j.Args, &a); err != nil {
		return &stepOutput{Result: FinalizeResult{JobError: &JobError{ID: ErrIDParsingJobArgs, Reason: "parsing job args: " + err.Error()}}}, nil
	}
	ir := initResult(c)
	refund := func(je *JobError) (*stepOutput, error) {
		out := &stepOutput{Result: FinalizeResult{JobError: je}, Koji: &kojiSettlement{State: KojiRefunded}}
		if q.cfg.Koji == nil {
			out.Koji = &kojiSettlement{State: KojiRefundOwed, Err: "this service has no Koji configured"}
			return out, nil
		}
		if err := q.cfg.Koji.Refund(ctx, &KojiRefundArgs{Server: a.Koji.Server, BuildID: ir.BuildID, Token: ir.Token}); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			// The reconciler retries it with backoff; the compose status
			// and kib_koji_unrefunded_reservations show it meanwhile.
			q.log.Error("refunding Koji build; will retry", "build_id", ir.BuildID, "err", err)
			out.Koji = &kojiSettlement{State: KojiRefundOwed, Err: err.Error(), Attempted: true}
		}
		return out, nil
	}
	if ir.JobError != nil || ir.BuildID == 0 {
		je := &JobError{ID: ErrIDKojiFailedDependency, Reason: "Koji build error", Details: []*JobError{ir.JobError}}
		if ir.BuildID == 0 {
			return &stepOutput{Result: FinalizeResult{JobError: je}}, nil
		}
		// koji-init reserved a build and then failed: give it back.
		return refund(je)
	}
	var failed []*JobError
	fin := &KojiFinalizeArgs{
		Server: a.Koji.Server, Name: a.Koji.Name, Version: a.Koji.Version, Release: a.Koji.Release,
		TaskID: a.Koji.TaskID, BuildID: ir.BuildID, Token: ir.Token,
		// Each attempt uploads into its own directory: the hub refuses
		// to write over a file an interrupted attempt left behind
		// ("upload path exists").
		Directory: a.Directory + "-" + uuid.NewString()[:8],
		StartTime: time.Unix(a.StartTime, 0).UTC(), EndTime: time.Now().UTC(),
	}
	for i, b := range c.Builds {
		r := decodeBuild(b.Result)
		if r.JobError != nil || !r.Success {
			failed = append(failed, r.JobError)
			continue
		}
		var ba buildArgs
		_ = json.Unmarshal(b.Args, &ba)
		name := ba.KojiFilename
		if name == "" && i < len(a.KojiFilenames) {
			name = a.KojiFilenames[i]
		}
		fin.Images = append(fin.Images, KojiImage{
			Arch: r.Arch, ImageType: ba.Image.ImageType, BootMode: r.ImageBootMode, Export: r.ExportName,
			Filename: name, Manifest: b.Manifest, Artifacts: r.Artifacts, Uploads: succeeded(r.TargetResults),
		})
	}
	if len(failed) > 0 {
		return refund(&JobError{ID: ErrIDKojiFailedDependency, Reason: "at least one job dependency failed", Details: failed})
	}
	if q.cfg.Koji == nil {
		return refund(&JobError{ID: ErrIDInvalidConfig, Reason: "this service has no Koji configured"})
	}
	if err := q.cfg.Koji.Finalize(ctx, fin); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return refund(&JobError{ID: ErrIDKojiFinalize, Reason: "Koji finalize error", Details: err.Error()})
	}
	return &stepOutput{Result: FinalizeResult{}, Koji: &kojiSettlement{State: KojiImported}}, nil
}

// succeeded returns the cloud targets (not "local") that succeeded.
func succeeded(trs []TargetResult) []TargetResult {
	var out []TargetResult
	for _, t := range trs {
		if t.Type != "local" && t.TargetError == nil {
			out = append(out, t)
		}
	}
	return out
}
