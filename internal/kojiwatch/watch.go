// Package kojiwatch follows Koji tasks and their subtasks until they finish,
// printing state changes as `koji watch-task` does.
package kojiwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/progress"
)

// Options configure Watch. The zero value polls every 6 seconds (koji's
// default poll_interval) and prints nothing.
type Options struct {
	// Interval is the time between polls; zero means 6s.
	Interval time.Duration
	// Out receives one line per state change ("  12 imageBuilderBuildArch
	// (x86_64): free -> open (builder1)") and a summary at the end; nil
	// prints nothing.
	Out io.Writer
	// Progress, if set (a terminal), gets a redrawn line counting open and
	// finished tasks between polls.
	Progress io.Writer
	// Quiet prints only failures.
	Quiet bool
}

// FailedError is returned by Watch when a watched top-level task did not
// close successfully.
type FailedError struct {
	// IDs are the failed or canceled top-level tasks.
	IDs []int64
}

func (e *FailedError) Error() string {
	s := make([]string, len(e.IDs))
	for i, id := range e.IDs {
		s[i] = fmt.Sprint(id)
	}
	return "koji task(s) " + strings.Join(s, ", ") + " did not complete successfully"
}

// Task is the last seen state of one watched task.
type Task struct {
	ID     int64
	Method string
	Arch   string
	State  int
	Parent int64
	Level  int
	// Failure is the fault text of a FAILED task.
	Failure string
}

func (t *Task) label() string {
	return fmt.Sprintf("%s%d %s (%s)", strings.Repeat("  ", t.Level), t.ID, t.Method, t.Arch)
}

func stateName(s int) string {
	switch s {
	case koji.TaskFree:
		return "free"
	case koji.TaskOpen:
		return "open"
	case koji.TaskClosed:
		return "closed"
	case koji.TaskCanceled:
		return "canceled"
	case koji.TaskAssigned:
		return "assigned"
	case koji.TaskFailed:
		return "failed"
	}
	return fmt.Sprintf("state %d", s)
}

func done(s int) bool {
	return s == koji.TaskClosed || s == koji.TaskCanceled || s == koji.TaskFailed
}

// Watch polls the tasks ids and all their descendants until every one is
// finished, reporting each state change to opts.Out. It returns the final
// states of all tasks seen, and a *FailedError if a top-level task failed or
// was canceled. Transport errors while polling are retried by the client;
// a canceled ctx ends the watch with ctx's error (the tasks keep running).
func Watch(ctx context.Context, c *koji.Client, ids []int64, opts Options) (map[int64]*Task, error) {
	if opts.Interval <= 0 {
		opts.Interval = 6 * time.Second
	}
	w := &watcher{c: c, opts: opts, tasks: map[int64]*Task{}, hosts: map[int64]string{}, start: time.Now()}
	if opts.Out != nil && !opts.Quiet {
		fmt.Fprintln(opts.Out, "Watching tasks (this may be safely interrupted)...")
	}
	w.order = append(w.order, ids...)
	for {
		if err := w.poll(ctx, ids); err != nil {
			return w.tasks, err
		}
		if w.allDone() {
			break
		}
		w.drawProgress()
		select {
		case <-ctx.Done():
			w.clearProgress()
			if opts.Out != nil {
				fmt.Fprintln(opts.Out, "Tasks still running. You can continue to watch with the 'kib koji watch-task' command.")
			}
			return w.tasks, ctx.Err()
		case <-time.After(opts.Interval):
		}
	}
	w.clearProgress()
	var failed []int64
	for _, id := range ids {
		t := w.tasks[id]
		if t.State != koji.TaskClosed {
			failed = append(failed, id)
		}
	}
	if opts.Out != nil && !opts.Quiet {
		w.summary()
	}
	if len(failed) > 0 {
		return w.tasks, &FailedError{IDs: failed}
	}
	return w.tasks, nil
}

type watcher struct {
	c     *koji.Client
	opts  Options
	tasks map[int64]*Task
	order []int64
	hosts map[int64]string
	start time.Time
	drawn bool
}

// poll refreshes every task of the trees rooted at ids, adding children.
func (w *watcher) poll(ctx context.Context, roots []int64) error {
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		prev := w.tasks[id]
		if prev != nil && done(prev.State) && prev.Level > 0 {
			continue // a finished child does not change any more
		}
		info, err := w.c.GetTaskInfo(ctx, id, false)
		if err != nil {
			return fmt.Errorf("watching task %d: %w", id, err)
		}
		t := &Task{ID: id, Method: info.Method, Arch: info.Arch, State: info.State}
		if info.Parent != nil {
			t.Parent = *info.Parent
			if p := w.tasks[t.Parent]; p != nil {
				t.Level = p.Level + 1
			}
		}
		if t.State == koji.TaskFailed {
			if _, err := w.c.GetTaskResult(ctx, id); err != nil {
				var f *koji.Fault
				if errors.As(err, &f) {
					t.Failure = f.String
				} else {
					t.Failure = err.Error()
				}
			}
		}
		w.tasks[id] = t
		if prev == nil || prev.State != t.State {
			w.report(ctx, prev, t, info)
		}
		if prev != nil && done(prev.State) {
			continue
		}
		var children []koji.TaskInfo
		if err := w.c.CallInto(ctx, &children, "getTaskChildren", id); err != nil {
			return fmt.Errorf("listing the subtasks of %d: %w", id, err)
		}
		for _, ch := range children {
			if _, seen := w.tasks[ch.ID]; !seen {
				w.order = append(w.order, ch.ID)
			}
			queue = append(queue, ch.ID)
		}
	}
	return nil
}

func (w *watcher) report(ctx context.Context, prev, t *Task, info *koji.TaskInfo) {
	if w.opts.Out == nil {
		return
	}
	if w.opts.Quiet && t.State != koji.TaskFailed {
		return
	}
	now := stateName(t.State)
	if t.State == koji.TaskOpen && info.HostID != nil {
		if name := w.hostName(ctx, *info.HostID); name != "" {
			now += " (" + name + ")"
		}
	}
	if t.State == koji.TaskFailed && t.Failure != "" {
		now = "FAILED: " + t.Failure
	}
	w.clearProgress()
	if prev == nil {
		fmt.Fprintf(w.opts.Out, "%s: %s\n", t.label(), now)
	} else {
		fmt.Fprintf(w.opts.Out, "%s: %s -> %s\n", t.label(), stateName(prev.State), now)
	}
}

func (w *watcher) hostName(ctx context.Context, id int64) string {
	if n, ok := w.hosts[id]; ok {
		return n
	}
	var h struct {
		Name string `json:"name"`
	}
	if err := w.c.CallInto(ctx, &h, "getHost", id); err != nil {
		return ""
	}
	w.hosts[id] = h.Name
	return h.Name
}

func (w *watcher) allDone() bool {
	for _, t := range w.tasks {
		if !done(t.State) {
			return false
		}
	}
	return true
}

func (w *watcher) counts() (free, open, closed, failed int) {
	for _, t := range w.tasks {
		switch t.State {
		case koji.TaskFree, koji.TaskAssigned:
			free++
		case koji.TaskOpen:
			open++
		case koji.TaskClosed:
			closed++
		default:
			failed++
		}
	}
	return
}

func (w *watcher) drawProgress() {
	if w.opts.Progress == nil {
		return
	}
	free, open, closed, failed := w.counts()
	total := free + open + closed + failed
	line := progress.Line(closed+failed, total, fmt.Sprintf("%d free, %d open, %d failed", free, open, failed), 0, 0, time.Since(w.start))
	fmt.Fprintf(w.opts.Progress, "\r\033[K%s", line)
	w.drawn = true
}

func (w *watcher) clearProgress() {
	if w.drawn {
		fmt.Fprint(w.opts.Progress, "\r\033[K")
		w.drawn = false
	}
}

func (w *watcher) summary() {
	fmt.Fprintln(w.opts.Out)
	for _, id := range w.order {
		t := w.tasks[id]
		if t == nil {
			continue
		}
		switch t.State {
		case koji.TaskClosed:
			fmt.Fprintf(w.opts.Out, "%s completed successfully\n", t.label())
		case koji.TaskFailed:
			fmt.Fprintf(w.opts.Out, "%s failed\n", t.label())
		case koji.TaskCanceled:
			fmt.Fprintf(w.opts.Out, "%s was canceled\n", t.label())
		}
	}
}
