package koji

import (
	"bytes"
	"context"
	"fmt"
)

// HostTask is an ASSIGNED task as host.getTasks returns it.
type HostTask struct {
	ID       int64   `json:"id"`
	State    int     `json:"state"`
	Channel  int64   `json:"channel_id"`
	HostID   int64   `json:"host_id"`
	Arch     string  `json:"arch"`
	Method   string  `json:"method"`
	Priority int     `json:"priority"`
	CreateTS float64 `json:"create_ts"`
}

// UpdateHost reports the host's load and readiness; data (e.g. "methods",
// "maxjobs") may be nil.
func (c *Client) UpdateHost(ctx context.Context, load float64, ready bool, data map[string]any) error {
	args := []any{load, ready}
	if data != nil {
		args = append(args, data)
	}
	return c.voidCall(ctx, "host.updateHost", args...)
}

// GetTasks returns the tasks assigned to this host.
func (c *Client) GetTasks(ctx context.Context) ([]HostTask, error) {
	var out []HostTask
	return out, c.CallInto(ctx, &out, "host.getTasks")
}

// OpenTask opens an assigned task; it returns nil if the task could not be
// opened (taken by someone else). Request holds the methodCall XML.
func (c *Client) OpenTask(ctx context.Context, id int64) (*TaskInfo, error) {
	var t *TaskInfo
	return t, c.CallInto(ctx, &t, "host.openTask", id)
}

// SetTaskWeight sets an open task's weight.
func (c *Client) SetTaskWeight(ctx context.Context, id int64, weight float64) error {
	return c.voidCall(ctx, "host.setTaskWeight", id, weight)
}

// CloseTask finishes a task with result, sent as a methodResponse document.
func (c *Client) CloseTask(ctx context.Context, id int64, result any) error {
	var buf bytes.Buffer
	if err := EncodeResponse(&buf, result); err != nil {
		return fmt.Errorf("koji: closeTask %d: %w", id, err)
	}
	return c.voidCall(ctx, "host.closeTask", id, buf.String())
}

// FailTask finishes a task with a fault (code 1 for non-Koji errors).
func (c *Client) FailTask(ctx context.Context, id int64, f *Fault) error {
	var buf bytes.Buffer
	if err := EncodeFault(&buf, f); err != nil {
		return fmt.Errorf("koji: failTask %d: %w", id, err)
	}
	return c.voidCall(ctx, "host.failTask", id, buf.String())
}

// RefuseTask hands a task back; soft refusals expire on the hub.
func (c *Client) RefuseTask(ctx context.Context, id int64, soft bool, msg string) error {
	return c.voidCall(ctx, "host.refuseTask", id, Kwargs{"soft": soft, "msg": msg})
}

// SubtaskOpts are the options of host.subtask.
type SubtaskOpts struct {
	Label    string
	Arch     string
	Priority *int
	Channel  string
	Kwargs   map[string]any // keyword arguments of the subtask's method
}

// Subtask creates a child task of parent (idempotent per label).
func (c *Client) Subtask(ctx context.Context, method string, args []any, parent int64, opts SubtaskOpts) (int64, error) {
	kw := Kwargs{}
	if opts.Label != "" {
		kw["label"] = opts.Label
	}
	if opts.Arch != "" {
		kw["arch"] = opts.Arch
	}
	if opts.Priority != nil {
		kw["priority"] = *opts.Priority
	}
	if opts.Channel != "" {
		kw["channel"] = opts.Channel
	}
	if opts.Kwargs != nil {
		kw["kwargs"] = opts.Kwargs
	}
	if args == nil {
		args = []any{}
	}
	var id int64
	return id, c.CallInto(ctx, &id, "host.subtask", method, args, parent, kw)
}

// TaskSetWait makes parent wait for the children ids (all if nil).
func (c *Client) TaskSetWait(ctx context.Context, parent int64, ids []int64) error {
	var list any
	if ids != nil {
		list = ids
	}
	return c.voidCall(ctx, "host.taskSetWait", parent, list)
}

// TaskWait returns the awaited children of parent that finished and those
// that did not.
func (c *Client) TaskWait(ctx context.Context, parent int64) (finished, unfinished []int64, err error) {
	var res [2][]int64
	if err := c.CallInto(ctx, &res, "host.taskWait", parent); err != nil {
		return nil, nil, err
	}
	return res[0], res[1], nil
}

// TaskResult is one child result of TaskWaitResults; Result is a
// {faultCode, faultString} map for failed tasks listed in canfail.
type TaskResult struct {
	ID     int64
	Result any
}

// TaskWaitResults collects the results of children ids (all if nil); a
// failed child not in canfail makes the call fail with its fault.
func (c *Client) TaskWaitResults(ctx context.Context, parent int64, ids, canfail []int64) ([]TaskResult, error) {
	var list any
	if ids != nil {
		list = ids
	}
	args := []any{parent, list}
	if canfail != nil {
		args = append(args, Kwargs{"canfail": canfail})
	}
	v, err := c.Call(ctx, "host.taskWaitResults", args...)
	if err != nil {
		return nil, err
	}
	var pairs [][]any
	if err := Convert(v, &pairs); err != nil {
		return nil, err
	}
	out := make([]TaskResult, 0, len(pairs))
	for _, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("koji: taskWaitResults: %w: pair of %d", ErrMalformed, len(p))
		}
		id, ok := p[0].(float64)
		if !ok {
			return nil, fmt.Errorf("koji: taskWaitResults: %w: task id %T", ErrMalformed, p[0])
		}
		out = append(out, TaskResult{ID: int64(id), Result: p[1]})
	}
	return out, nil
}

// ImageBuildResult is one arch subtask's result for CompleteImageBuild.
type ImageBuildResult struct {
	TaskID  int64            `json:"task_id"`
	Name    string           `json:"name"`
	Version string           `json:"version"`
	Release string           `json:"release"`
	Arch    string           `json:"arch"`
	Files   []string         `json:"files"`
	Logs    []string         `json:"logs"`
	RPMList []map[string]any `json:"rpmlist"`
}

// InitImageBuild creates a BUILDING image build owned by the task's owner;
// an empty release lets the hub choose the next one.
func (c *Client) InitImageBuild(ctx context.Context, taskID int64, nvr NVR) (*Build, error) {
	info := map[string]any{"name": nvr.Name, "version": nvr.Version, "release": nil, "epoch": nil}
	if nvr.Release != "" {
		info["release"] = nvr.Release
	}
	if nvr.Epoch != nil {
		info["epoch"] = *nvr.Epoch
	}
	var b Build
	return &b, c.CallInto(ctx, &b, "host.initImageBuild", taskID, info)
}

func resultsArg(results map[int64]ImageBuildResult) map[string]any {
	m := make(map[string]any, len(results))
	for id, r := range results {
		if r.Files == nil {
			r.Files = []string{}
		}
		if r.Logs == nil {
			r.Logs = []string{}
		}
		if r.RPMList == nil {
			r.RPMList = []map[string]any{}
		}
		m[fmt.Sprint(id)] = r
	}
	return m
}

// CompleteImageBuild imports the subtasks' files into the build and
// completes it.
func (c *Client) CompleteImageBuild(ctx context.Context, taskID, buildID int64, results map[int64]ImageBuildResult) error {
	return c.voidCall(ctx, "host.completeImageBuild", taskID, buildID, resultsArg(results))
}

// MoveImageBuildToScratch moves the subtasks' files to the scratch area.
func (c *Client) MoveImageBuildToScratch(ctx context.Context, taskID int64, results map[int64]ImageBuildResult) error {
	return c.voidCall(ctx, "host.moveImageBuildToScratch", taskID, resultsArg(results))
}

// FailBuild marks a BUILDING build of an open task FAILED.
func (c *Client) FailBuild(ctx context.Context, taskID, buildID int64) error {
	return c.voidCall(ctx, "host.failBuild", taskID, buildID)
}

// HostTagBuild tags a build as the tagBuild task taskID.
func (c *Client) HostTagBuild(ctx context.Context, taskID int64, tag, build any) error {
	return c.voidCall(ctx, "host.tagBuild", taskID, tag, build)
}
