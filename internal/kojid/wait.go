package kojid

import (
	"context"
	"fmt"
	"time"
)

// WaitOptions are the options of Task.Wait, as kojid's
// BaseTaskHandler.wait takes them.
type WaitOptions struct {
	// All waits for every subtask; otherwise Wait returns once any finished.
	All bool
	// FailAny (with All) cancels the other children and fails at once when
	// one not in CanFail fails.
	FailAny bool
	// CanFail lists subtasks whose failure is returned as a
	// {faultCode, faultString} result instead of an error.
	CanFail []int64
}

// Wait makes the task wait for its subtasks (host.taskSetWait), polls
// host.taskWait whenever the hub alerts (Task.Wake) or every WaitPoll, and
// returns the finished subtasks' results (host.taskWaitResults) by id. A
// failed subtask not in CanFail makes Wait return its fault.
func (t *Task) Wait(ctx context.Context, subtasks []int64, o WaitOptions) (map[int64]any, error) {
	hub := t.Hub
	id := t.Info.ID
	if err := hub.TaskSetWait(ctx, id, subtasks); err != nil {
		return nil, fmt.Errorf("host.taskSetWait: %w", err)
	}
	poll := t.WaitPoll
	if poll <= 0 {
		poll = 30 * time.Second
	}
	checked := map[int64]bool{}
	for _, c := range o.CanFail {
		checked[c] = true
	}
	var finished []int64
	for {
		fin, unfin, err := hub.TaskWait(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("host.taskWait: %w", err)
		}
		finished = append(finished, fin...)
		if len(unfin) == 0 {
			break
		}
		if len(finished) > 0 {
			if !o.All {
				break
			}
			if o.FailAny {
				for _, f := range finished {
					if checked[f] {
						continue
					}
					if _, err := hub.GetTaskResult(ctx, f); err != nil {
						if t.Log != nil {
							t.Log.Info("subtask failed, canceling the others", "subtask", f)
						}
						if _, cerr := hub.Call(ctx, "cancelTaskChildren", id); cerr != nil && t.Log != nil {
							t.Log.Warn("cancelTaskChildren", "err", cerr)
						}
						return nil, err
					}
					checked[f] = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.Wake:
		case <-time.After(poll):
		}
	}
	if o.All {
		finished = subtasks
	}
	var canfail []int64
	if o.CanFail != nil {
		canfail = o.CanFail
	}
	res, err := hub.TaskWaitResults(ctx, id, finished, canfail)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]any, len(res))
	for _, r := range res {
		out[r.ID] = r.Result
	}
	return out, nil
}
