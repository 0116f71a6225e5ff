package kojid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// Weighter is implemented by handlers whose tasks weigh other than 1.0
// (kojid's _taskWeight); the weight is sent with host.setTaskWeight.
type Weighter interface {
	Weight() float64
}

// Daemon is a Koji build host: it runs Koji 1.35's host loop (kojid's
// TaskManager) against Hub and runs each task it takes with the handler
// registered for the task's method. Fields must not change after Run starts.
type Daemon struct {
	// Hub is the host's logged-in session; Run makes it exclusive.
	Hub *koji.Client
	// Handlers maps task methods to handlers; tasks of other methods are
	// refused.
	Handlers map[string]Handler
	// Log is the daemon's logger; nil discards.
	Log *slog.Logger
	// WorkDir holds one scratch directory per running task. Empty means
	// /var/tmp/kib-kojid.
	WorkDir string
	// Interval is the pause between polls when no task was taken (kojid's
	// sleeptime). Zero means 15s.
	Interval time.Duration
	// MaxJobs is the most tasks run at once; zero means 10 (kojid's maxjobs).
	MaxJobs int
	// MinSpace is the free space, in bytes, WorkDir's file system needs for
	// the host to be ready; zero means 8 GiB (kojid's minspace), negative
	// disables the check.
	MinSpace int64
	// MaxLoad is the highest one-minute load average per CPU at which the
	// host still takes tasks; zero means 4.0 (kojid's maxload), negative
	// disables the check.
	MaxLoad float64
	// WaitPoll is how often a waiting task polls host.taskWait when no alert
	// woke it; zero means 30s.
	WaitPoll time.Duration

	mu      sync.Mutex
	running map[int64]*running
	done    chan int64
	hostID  int64
	ready   bool
	// readyKnown is set once readiness was logged.
	readyKnown bool
}

type running struct {
	cancel  context.CancelFunc
	wake    chan struct{}
	weight  float64
	waiting bool
	ended   chan struct{}
}

func (d *Daemon) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

func (d *Daemon) withDefaults() {
	if d.WorkDir == "" {
		d.WorkDir = "/var/tmp/kib-kojid"
	}
	if d.Interval <= 0 {
		d.Interval = 15 * time.Second
	}
	if d.MaxJobs <= 0 {
		d.MaxJobs = 10
	}
	if d.MinSpace == 0 {
		d.MinSpace = 8 << 30
	}
	if d.MaxLoad == 0 {
		d.MaxLoad = 4.0
	}
	if d.WaitPoll <= 0 {
		d.WaitPoll = 30 * time.Second
	}
}

// Methods returns the task methods the daemon handles, sorted.
func (d *Daemon) Methods() []string {
	var out []string
	for m := range d.Handlers {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Run takes the exclusive host session (forcing out a stale one, as a
// restarted kojid does), frees tasks the hub still assigns to this host
// that no process of this daemon runs, and then polls for tasks until ctx
// ends. On the way out it stops the running tasks, hands them back to the
// hub (host.freeTasks), reports itself not ready and logs out.
func (d *Daemon) Run(ctx context.Context) error {
	d.withDefaults()
	d.running = map[int64]*running{}
	d.done = make(chan int64, 64)
	if err := os.MkdirAll(d.WorkDir, 0o755); err != nil {
		return fmt.Errorf("kojid: work dir: %w", err)
	}
	if err := d.Hub.ExclusiveSession(ctx, true); err != nil {
		return fmt.Errorf("kojid: taking the exclusive host session: %w", err)
	}
	if err := d.Hub.CallInto(ctx, &d.hostID, "host.getID"); err != nil {
		return fmt.Errorf("kojid: host.getID: %w", err)
	}
	d.log().Info("kojid: logged in as build host", "host_id", d.hostID, "methods", d.Methods())
	var wg sync.WaitGroup
	defer d.shutdown(&wg)
	for {
		if err := d.updateTasks(ctx); err != nil && ctx.Err() == nil {
			d.log().Warn("kojid: updating tasks", "err", err)
		}
		took, err := d.getNextTask(ctx, &wg)
		if err != nil && ctx.Err() == nil {
			d.log().Warn("kojid: getting the next task", "err", err)
		}
		if took {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.Interval):
		case id := <-d.done:
			d.log().Debug("kojid: task ended", "task", id)
		}
	}
}

func (d *Daemon) shutdown(wg *sync.WaitGroup) {
	d.mu.Lock()
	var ids []int64
	for id, r := range d.running {
		ids = append(ids, id)
		r.cancel()
	}
	d.mu.Unlock()
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(ids) > 0 {
		slices.Sort(ids)
		d.log().Info("kojid: freeing tasks on shutdown", "tasks", ids)
		if err := d.freeTasks(ctx, ids); err != nil {
			d.log().Warn("kojid: host.freeTasks", "err", err)
		}
	}
	if err := d.Hub.UpdateHost(ctx, 0, false, nil); err != nil {
		d.log().Warn("kojid: host.updateHost on shutdown", "err", err)
	}
	if err := d.Hub.Logout(ctx); err != nil {
		d.log().Warn("kojid: logout", "err", err)
	}
}

func (d *Daemon) freeTasks(ctx context.Context, ids []int64) error {
	list := make([]any, len(ids))
	for i, id := range ids {
		list[i] = id
	}
	_, err := d.Hub.Call(ctx, "host.freeTasks", list)
	return err
}

// hostTask is an entry of host.getHostTasks.
type hostTask struct {
	ID      int64   `json:"id"`
	Waiting *bool   `json:"waiting"`
	Weight  float64 `json:"weight"`
	Alert   *bool   `json:"alert"`
}

// updateTasks is kojid's updateTasks: tasks the hub says this host has open
// but no handler runs (left over from a crash) are freed; alerts wake
// waiting tasks.
func (d *Daemon) updateTasks(ctx context.Context) error {
	var tasks []hostTask
	if err := d.Hub.CallInto(ctx, &tasks, "host.getHostTasks"); err != nil {
		return err
	}
	var stale []int64
	d.mu.Lock()
	for _, t := range tasks {
		r := d.running[t.ID]
		if r == nil {
			stale = append(stale, t.ID)
			continue
		}
		r.waiting = t.Waiting != nil && *t.Waiting
		if t.Alert != nil && *t.Alert {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}
	d.mu.Unlock()
	if len(stale) > 0 {
		d.log().Warn("kojid: freeing tasks this host no longer runs", "tasks", stale)
		return d.freeTasks(ctx, stale)
	}
	return nil
}

func (d *Daemon) load() (load float64, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.running {
		if !r.waiting {
			load += r.weight
		}
	}
	return load, len(d.running)
}

type hostInfo struct {
	Enabled  bool    `json:"enabled"`
	Capacity float64 `json:"capacity"`
}

// readyForTask is kojid's readyForTask: enabled, load within capacity,
// fewer than MaxJobs tasks, enough disk space and a tolerable load average.
func (d *Daemon) readyForTask(ctx context.Context, load float64, n int) (bool, string, error) {
	var h hostInfo
	if err := d.Hub.CallInto(ctx, &h, "host.getHost"); err != nil {
		return false, "", err
	}
	switch {
	case !h.Enabled:
		return false, "host is disabled", nil
	case load > h.Capacity:
		return false, fmt.Sprintf("task load %.2f exceeds capacity %.2f", load, h.Capacity), nil
	case n >= d.MaxJobs:
		return false, fmt.Sprintf("maximum number of jobs (%d) reached", d.MaxJobs), nil
	}
	if d.MinSpace > 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d.WorkDir, &st); err != nil {
			return false, "", fmt.Errorf("statfs %s: %w", d.WorkDir, err)
		}
		if free := int64(st.Bavail) * int64(st.Bsize); free < d.MinSpace {
			return false, fmt.Sprintf("insufficient disk space in %s: %d MiB free, %d MiB needed", d.WorkDir, free>>20, d.MinSpace>>20), nil
		}
	}
	if d.MaxLoad > 0 {
		if l, ok := loadAvg(); ok && l/float64(runtime.NumCPU()) > d.MaxLoad {
			return false, fmt.Sprintf("load average %.2f exceeds %.1f per CPU", l, d.MaxLoad), nil
		}
	}
	return true, "", nil
}

func loadAvg() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return 0, false
	}
	return l, true
}

// getNextTask reports load and readiness (host.updateHost with methods and
// maxjobs), then takes the first assigned task it can handle; tasks of
// methods without a handler are refused.
func (d *Daemon) getNextTask(ctx context.Context, wg *sync.WaitGroup) (bool, error) {
	load, n := d.load()
	ready, why, err := d.readyForTask(ctx, load, n)
	if err != nil {
		return false, err
	}
	if ready != d.ready || !d.readyKnown {
		d.readyKnown = true
		if ready {
			d.log().Info("kojid: ready for tasks")
		} else {
			d.log().Info("kojid: not ready for tasks", "reason", why)
		}
		d.ready = ready
	}
	data := map[string]any{"methods": d.Methods(), "maxjobs": d.MaxJobs}
	if err := d.Hub.UpdateHost(ctx, load, ready, data); err != nil {
		return false, err
	}
	if !ready {
		return false, nil
	}
	tasks, err := d.Hub.GetTasks(ctx)
	if err != nil {
		return false, err
	}
	for _, t := range tasks {
		if t.State != koji.TaskAssigned {
			continue
		}
		d.mu.Lock()
		_, mine := d.running[t.ID]
		d.mu.Unlock()
		if mine {
			continue
		}
		if _, ok := d.Handlers[t.Method]; !ok {
			d.log().Warn("kojid: refusing task, no handler", "task", t.ID, "method", t.Method)
			if err := d.Hub.RefuseTask(ctx, t.ID, false, "no handler for method "+t.Method); err != nil {
				d.log().Warn("kojid: host.refuseTask", "task", t.ID, "err", err)
			}
			continue
		}
		took, err := d.takeTask(ctx, t, wg)
		if err != nil {
			d.log().Warn("kojid: taking task", "task", t.ID, "err", err)
			continue
		}
		if took {
			return true, nil
		}
	}
	return false, nil
}

// takeTask opens a task, sets its weight and starts its handler with a
// subsession of its own.
func (d *Daemon) takeTask(ctx context.Context, ht koji.HostTask, wg *sync.WaitGroup) (bool, error) {
	h := d.Handlers[ht.Method]
	info, err := d.Hub.OpenTask(ctx, ht.ID)
	if err != nil {
		return false, err
	}
	if info == nil {
		d.log().Info("kojid: could not open task", "task", ht.ID)
		return false, nil
	}
	req, _ := info.Request.(string)
	method, params, err := koji.DecodeCall(strings.NewReader(req))
	if err != nil || method != ht.Method {
		f := &koji.Fault{Code: koji.CodeGeneric, String: fmt.Sprintf("kojid: undecodable task request: %v", err)}
		return true, d.Hub.FailTask(ctx, ht.ID, f)
	}
	weight := 1.0
	if w, ok := h.(Weighter); ok {
		weight = w.Weight()
	}
	if err := d.Hub.SetTaskWeight(ctx, ht.ID, weight); err != nil {
		d.log().Warn("kojid: host.setTaskWeight", "task", ht.ID, "err", err)
	}
	sub, err := d.Hub.Subsession(ctx)
	if err != nil {
		_ = d.freeTasks(ctx, []int64{ht.ID})
		return false, fmt.Errorf("subsession: %w", err)
	}
	tctx, cancel := context.WithCancel(ctx)
	r := &running{cancel: cancel, wake: make(chan struct{}, 1), weight: weight, ended: make(chan struct{})}
	d.mu.Lock()
	d.running[ht.ID] = r
	d.mu.Unlock()
	args, kw := koji.SplitKwargs(params)
	t := &Task{Info: info, Params: args, Kwargs: kw, Hub: sub, Wake: r.wake, WaitPoll: d.WaitPoll}
	d.log().Info("kojid: task opened", "task", ht.ID, "method", ht.Method, "arch", ht.Arch, "weight", weight)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.ended)
		d.runTask(tctx, h, t)
		cancel()
		d.mu.Lock()
		delete(d.running, ht.ID)
		d.mu.Unlock()
		select {
		case d.done <- ht.ID:
		default:
		}
	}()
	return true, nil
}

// runTask runs a handler and settles the task: closeTask with its result,
// failTask with its fault, or, when the daemon is stopping, nothing (the
// shutdown frees it). The task's log is uploaded as task.log first.
func (d *Daemon) runTask(ctx context.Context, h Handler, t *Task) {
	id := t.Info.ID
	sessID, _ := t.Hub.SessionID()
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Hub.LogoutChild(lctx, sessID); err != nil {
			d.log().Debug("kojid: logoutChild", "task", id, "err", err)
		}
	}()
	t.WorkDir = filepath.Join(d.WorkDir, fmt.Sprintf("task_%d", id))
	_ = os.RemoveAll(t.WorkDir)
	if err := os.MkdirAll(t.WorkDir, 0o755); err != nil {
		d.settle(ctx, t, nil, fmt.Errorf("creating the task's work dir: %w", err))
		return
	}
	defer os.RemoveAll(t.WorkDir)
	logPath := filepath.Join(t.WorkDir, "task.log")
	lf, err := os.Create(logPath)
	if err != nil {
		d.settle(ctx, t, nil, fmt.Errorf("creating the task log: %w", err))
		return
	}
	t.Log = slog.New(teeHandler{d.log().Handler().WithAttrs([]slog.Attr{slog.Int64("task", id)}),
		slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	t.Upload = func(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
		return uploadTaskFile(ctx, t.Hub, id, name, r, size)
	}
	t.Log.Info("task started", "method", t.Info.Method, "args", len(t.Params))
	res, herr := runHandler(ctx, h, t)
	if herr != nil {
		t.Log.Error("task failed", "err", herr)
	} else {
		t.Log.Info("task completed")
	}
	lf.Close()
	if ctx.Err() != nil {
		d.log().Info("kojid: task stopped by shutdown", "task", id)
		return
	}
	if f, err := os.Open(logPath); err == nil {
		st, _ := f.Stat()
		if _, err := uploadTaskFile(ctx, t.Hub, id, "task.log", f, st.Size()); err != nil {
			d.log().Warn("kojid: uploading task.log", "task", id, "err", err)
		}
		f.Close()
	}
	d.settle(ctx, t, res, herr)
}

// runHandler calls the handler, turning a panic into an error.
func runHandler(ctx context.Context, h Handler, t *Task) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return h.Handle(ctx, t)
}

// TaskFault encodes a handler error as kojid does: a Koji fault keeps its
// code (and the error's full text); any other error is a GenericError.
func TaskFault(err error) *koji.Fault {
	var f *koji.Fault
	if errors.As(err, &f) {
		if err == error(f) {
			return f
		}
		return &koji.Fault{Code: f.Code, String: err.Error()}
	}
	return &koji.Fault{Code: koji.CodeGeneric, String: err.Error()}
}

func (d *Daemon) settle(ctx context.Context, t *Task, res any, herr error) {
	id := t.Info.ID
	var err error
	if herr != nil {
		err = t.Hub.FailTask(ctx, id, TaskFault(herr))
	} else {
		err = t.Hub.CloseTask(ctx, id, res)
	}
	if err != nil {
		d.log().Error("kojid: settling task", "task", id, "err", err)
	}
}

// replaceMax is the largest task file uploaded whole with overwrite, so a
// handler can rewrite it while the task runs (compose-status.json at every
// poll); larger files (images) use the resumable upload.
const replaceMax = 4 << 20

func uploadTaskFile(ctx context.Context, c *koji.Client, id int64, name string, r io.Reader, size int64) (string, error) {
	dir := TaskRelPath(id)
	if size >= 0 && size <= replaceMax {
		b, err := io.ReadAll(io.LimitReader(r, replaceMax+1))
		if err != nil {
			return "", err
		}
		if err := c.UploadReplace(ctx, dir, name, b); err != nil {
			return "", fmt.Errorf("uploading %s to task %d: %w", name, id, err)
		}
		return dir + "/" + name, nil
	}
	ra, ok := r.(io.ReaderAt)
	if !ok {
		b, err := io.ReadAll(r)
		if err != nil {
			return "", err
		}
		ra, size = strings.NewReader(string(b)), int64(len(b))
	}
	if _, err := c.Upload(ctx, dir, name, ra, size, nil); err != nil {
		return "", fmt.Errorf("uploading %s to task %d: %w", name, id, err)
	}
	return dir + "/" + name, nil
}

// TaskRelPath is koji.pathinfo.taskrelpath: tasks/<id % 10000>/<id>.
func TaskRelPath(id int64) string {
	return fmt.Sprintf("tasks/%d/%d", id%10000, id)
}

// teeHandler sends records to two handlers.
type teeHandler [2]slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h[0].Enabled(ctx, l) || h[1].Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			errs = append(errs, x.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h[0].WithAttrs(as), h[1].WithAttrs(as)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h[0].WithGroup(name), h[1].WithGroup(name)}
}
