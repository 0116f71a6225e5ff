// Package kojid is kib's Koji build host: the host loop (updateHost,
// getTasks, openTask, closeTask/failTask, housekeeping) and the task
// handlers it dispatches to (imageBuilderBuild, imageBuilderBuildArch,
// osbuildImage, tagBuild).
package kojid

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// Handler runs one Koji task method on this host. The value it returns is
// the task's result (closeTask); an error fails the task (failTask), with a
// *koji.Fault kept as is and any other error sent as a generic fault.
type Handler interface {
	Handle(ctx context.Context, t *Task) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Task) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, t *Task) (any, error) { return f(ctx, t) }

// Task is an open task as a handler sees it.
type Task struct {
	Info   *koji.TaskInfo // as host.openTask returned it
	Params []any          // the task's positional arguments, decoded from Info.Request
	Kwargs map[string]any // the task's keyword arguments, if any
	// Hub is the host's logged-in session: host.* calls (subtask, taskWait,
	// initImageBuild, ...) and ordinary calls go through it.
	Hub *koji.Client
	// WorkDir is a local scratch directory for this task, removed when the
	// task ends.
	WorkDir string
	// Log is the task's logger: lines go to the daemon's log and into the
	// task's log file, uploaded to the task's output as kojid does.
	Log *slog.Logger
	// Upload puts a file into the task's output directory on the hub
	// (tasks/NNNN/ID/name) and returns the hub path it was uploaded to.
	Upload func(ctx context.Context, name string, r io.Reader, size int64) (string, error)
	// Wake receives a value when the hub alerts that an awaited subtask of
	// this task finished (getHostTasks "alert"); Wait uses it.
	Wake <-chan struct{}
	// WaitPoll is how often Wait polls host.taskWait without an alert;
	// zero means 30s.
	WaitPoll time.Duration
}
