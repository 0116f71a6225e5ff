// Package hosttest is a minimal Koji build host for tests of task
// handlers: it takes the host's tasks, runs them with the given handlers,
// each on its own subsession, and closes or fails them. It is no daemon:
// no load reporting, no housekeeping, no task processes.
package hosttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojid"
)

// TagBuild is kojid's tagBuild(tag, build, force, fromtag, ignore_success)
// reduced to host.tagBuild.
var TagBuild = kojid.HandlerFunc(func(ctx context.Context, t *kojid.Task) (any, error) {
	if len(t.Params) < 2 {
		return nil, errors.New("tagBuild: tag and build are required")
	}
	return nil, t.Hub.HostTagBuild(ctx, t.Info.ID, t.Params[0], t.Params[1])
})

// Run serves the tasks assigned to host (a logged-in host session) until
// ctx ends, then waits for the running ones.
func Run(ctx context.Context, tb testing.TB, host *koji.Client, handlers map[string]kojid.Handler) {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[int64]bool{}
	for ctx.Err() == nil {
		tasks, err := host.GetTasks(ctx)
		if err != nil {
			if ctx.Err() == nil {
				tb.Errorf("getTasks: %v", err)
			}
			return
		}
		for _, ht := range tasks {
			if running[ht.ID] {
				continue
			}
			info, err := host.OpenTask(ctx, ht.ID)
			if err != nil || info == nil {
				continue
			}
			running[ht.ID] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				runTask(ctx, tb, host, info, handlers)
			}()
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func runTask(ctx context.Context, tb testing.TB, host *koji.Client, info *koji.TaskInfo, handlers map[string]kojid.Handler) {
	reqXML, _ := info.Request.(string)
	method, params, err := koji.DecodeCall(strings.NewReader(reqXML))
	if err != nil {
		tb.Errorf("task %d request: %v", info.ID, err)
		return
	}
	args, kw := koji.SplitKwargs(params)
	hub, err := host.Subsession(ctx)
	if err != nil {
		tb.Errorf("subsession: %v", err)
		return
	}
	defer func() { _ = host.LogoutChild(context.WithoutCancel(ctx), sessionID(hub)) }()
	dir := fmt.Sprintf("tasks/%d/%d", info.ID%10000, info.ID)
	task := &kojid.Task{Info: info, Params: args, Kwargs: kw, Hub: hub, WorkDir: tb.TempDir(), Log: slog.New(slog.DiscardHandler),
		Upload: func(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
			data, err := io.ReadAll(r)
			if err != nil {
				return "", err
			}
			return dir + "/" + name, hub.UploadReplace(ctx, dir, name, data)
		}}
	var res any
	if h := handlers[method]; h != nil {
		res, err = h.Handle(ctx, task)
	} else {
		err = fmt.Errorf("no handler for %s", method)
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		var f *koji.Fault
		if !errors.As(err, &f) {
			f = &koji.Fault{Code: koji.CodeUnknown, String: err.Error()}
		}
		if ferr := hub.FailTask(ctx, info.ID, f); ferr != nil {
			tb.Errorf("failTask %d: %v", info.ID, ferr)
		}
		return
	}
	if cerr := hub.CloseTask(ctx, info.ID, res); cerr != nil {
		tb.Errorf("closeTask %d: %v", info.ID, cerr)
	}
}

func sessionID(c *koji.Client) int64 {
	id, _ := c.SessionID()
	return id
}
