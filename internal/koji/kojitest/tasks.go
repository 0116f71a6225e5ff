package kojitest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// Task states (koji.TASK_STATES).
const (
	TaskFree     = 0
	TaskOpen     = 1
	TaskClosed   = 2
	TaskCanceled = 3
	TaskAssigned = 4
	TaskFailed   = 5
)

type task struct {
	id               int
	method           string
	request          []any
	state            int
	owner            *User
	host             *host
	channel          int
	arch             string
	priority         int
	weight           float64
	parent           int
	label            string
	waiting, awaited bool
	result           string
	created, started time.Time
	completed        time.Time
	assigned         time.Time
	refusedBy        map[int]bool
}

type host struct {
	id       int
	user     *User
	arches   []string
	channels []int
	capacity float64
	ready    bool
	taskLoad float64
	data     any
	updated  time.Time
}

type tag struct {
	id     int
	name   string
	arches string
	parent int
	extra  map[string]any
	builds []int
}

type target struct {
	id             int
	name           string
	buildTag, dest int
}

type repo struct {
	id    int
	tag   int
	state int
	event int
}

// AddHost creates a build host (a user of type HOST logging in with
// password) in the given channels, like addHost plus addHostToChannel.
func (h *Hub) AddHost(name, password string, arches []string, channels ...string) *User {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.addUserLocked(name, password, true)
	ho := &host{id: len(h.hosts) + 1, user: u, arches: arches, capacity: 2.0}
	for _, ch := range channels {
		ho.channels = append(ho.channels, h.channels[ch])
	}
	h.hosts[ho.id] = ho
	return u
}

// MakeTask creates a FREE task as owner would (e.g. an osbuildImage task in
// channel "image", arch "noarch") and returns its id.
func (h *Hub) MakeTask(owner, method string, args []any, channel, arch string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.newTask(h.userByName[owner], method, args, h.channels[channel], arch, 20, 0, "")
	return t.id
}

// TaskState returns the state of a task, or -1 if there is none.
func (h *Hub) TaskState(id int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tasks[id]; t != nil {
		return t.state
	}
	return -1
}

// AddTag creates a tag with space-separated arches and optional parent
// (whose arches and extra are inherited by getBuildConfig).
func (h *Hub) AddTag(name, arches, parent string, extra map[string]any) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := &tag{id: len(h.tags) + 1, name: name, arches: arches, extra: extra}
	if p := h.tagByName(parent); p != nil {
		t.parent = p.id
	}
	h.tags[t.id] = t
	return t.id
}

// AddTarget creates a build target.
func (h *Hub) AddTarget(name, buildTag, destTag string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := &target{id: len(h.targets) + 1, name: name, buildTag: h.tagByName(buildTag).id, dest: h.tagByName(destTag).id}
	h.targets[t.id] = t
	return t.id
}

// AddRepo creates a READY repo for a tag and returns its id.
func (h *Hub) AddRepo(tagName string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &repo{id: len(h.repos) + 1, tag: h.tagByName(tagName).id, state: 1, event: 1000 + len(h.repos)}
	h.repos = append(h.repos, r)
	return r.id
}

// TaggedBuilds returns the ids of the builds tagged into a tag.
func (h *Hub) TaggedBuilds(tagName string) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.tagByName(tagName).builds)
}

func (h *Hub) tagByName(name string) *tag {
	for _, t := range h.tags {
		if t.name == name {
			return t
		}
	}
	return nil
}

func (h *Hub) findTag(v any) *tag {
	switch x := v.(type) {
	case int64:
		return h.tags[int(x)]
	case string:
		return h.tagByName(x)
	}
	return nil
}

func (h *Hub) newTask(owner *User, method string, args []any, channel int, arch string, prio, parent int, label string) *task {
	t := &task{id: h.nextTask, method: method, request: args, owner: owner, channel: channel, arch: arch,
		priority: prio, weight: 1.0, parent: parent, label: label, created: h.now(), refusedBy: map[int]bool{}}
	h.nextTask++
	h.tasks[t.id] = t
	return t
}

func (h *Hub) taskInfo(t *task, request bool) map[string]any {
	ct, cts := tsOrNil(t.created)
	st, sts := tsOrNil(t.started)
	dt, dts := tsOrNil(t.completed)
	var hostID, parent, label, owner any
	if t.host != nil {
		hostID = t.host.id
	}
	if t.parent != 0 {
		parent = t.parent
	}
	if t.label != "" {
		label = t.label
	}
	if t.owner != nil {
		owner = t.owner.ID
	}
	m := map[string]any{
		"id": t.id, "state": t.state, "method": t.method, "arch": t.arch, "channel_id": t.channel,
		"host_id": hostID, "parent": parent, "label": label, "owner": owner, "priority": t.priority,
		"weight": t.weight, "waiting": nilIfFalse(t.waiting), "awaited": nilIfFalse(t.awaited),
		"create_time": ct, "create_ts": cts, "start_time": st, "start_ts": sts,
		"completion_time": dt, "completion_ts": dts,
	}
	if request {
		m["request"] = t.request
	}
	return m
}

// verifyHost is Host.verify: a host user with an exclusive session.
func (h *Hub) verifyHost(s *session) (*host, error) {
	if s == nil {
		return nil, authError("Not logged-in")
	}
	if !s.user.Host {
		return nil, authError("User %d is not a host", s.user.ID)
	}
	excl := s.exclusive
	if m := h.sessions[s.master]; s.master != 0 && m != nil {
		excl = m.exclusive
	}
	if !excl {
		return nil, authError("This method requires an exclusive session")
	}
	for _, ho := range h.hosts {
		if ho.user == s.user {
			return ho, nil
		}
	}
	return nil, authError("User %d is not a host", s.user.ID)
}

// assertHost is Task.assertHost: the task is OPEN and held by ho.
func (h *Hub) assertHost(id int, ho *host) error {
	t := h.tasks[id]
	if t == nil || t.state != TaskOpen || t.host != ho {
		return notAllowed("host %d does not own task %d", ho.id, id)
	}
	return nil
}

type hostMethod func(c *call, ho *host) (any, error)

var hostMethods = map[string]method{}

func init() {
	hm := map[string]hostMethod{
		"getID": func(c *call, ho *host) (any, error) { return ho.id, nil },
		"getHost": func(c *call, ho *host) (any, error) {
			return map[string]any{"id": ho.id, "user_id": ho.user.ID, "name": ho.user.Name, "arches": strings.Join(ho.arches, " "),
				"capacity": ho.capacity, "enabled": true, "ready": ho.ready, "task_load": ho.taskLoad}, nil
		},
		"updateHost": func(c *call, ho *host) (any, error) {
			if err := c.arity(2, 3); err != nil {
				return nil, err
			}
			load, ok := c.args[0].(float64)
			if !ok {
				if n, isInt := c.args[0].(int64); isInt {
					load = float64(n)
				} else {
					return nil, paramError("task_load must be a number")
				}
			}
			ready, ok := c.args[1].(bool)
			if !ok {
				return nil, paramError("ready must be a boolean")
			}
			ho.taskLoad, ho.ready, ho.data, ho.updated = load, ready, c.opt(2, "data"), c.h.now()
			c.commit = true
			return nil, nil
		},
		"getTasks": func(c *call, ho *host) (any, error) {
			// Other hosts' calls run the real scheduler's checks too; here
			// every getTasks applies the timeouts.
			c.h.checkTimeouts()
			out := c.h.assigned(ho)
			if len(out) == 0 {
				c.h.schedule()
				out = c.h.assigned(ho)
				c.commit = true
			}
			return out, nil
		},
		"getHostTasks": func(c *call, ho *host) (any, error) {
			out := []any{}
			for _, id := range sortedTaskIDs(c.h) {
				t := c.h.tasks[id]
				if t.host == ho && t.state == TaskOpen {
					m := map[string]any{"id": t.id, "waiting": nilIfFalse(t.waiting), "weight": t.weight}
					if t.waiting && c.h.awaitedFinished(t.id) {
						m["alert"] = true
					}
					out = append(out, m)
				}
			}
			return out, nil
		},
		"openTask": func(c *call, ho *host) (any, error) {
			t, err := c.taskArg(0)
			if err != nil {
				return nil, err
			}
			if !((t.state == TaskAssigned && t.host == ho) || t.state == TaskFree) {
				return nil, nil
			}
			t.state, t.host, t.started = TaskOpen, ho, c.h.now()
			c.commit = true
			info := c.h.taskInfo(t, false)
			var buf bytes.Buffer
			if err := koji.EncodeCall(&buf, t.method, t.request...); err != nil {
				return nil, err
			}
			info["request"] = buf.String()
			return info, nil
		},
		"setTaskWeight": func(c *call, ho *host) (any, error) {
			t, err := c.ownedTask(ho, 0)
			if err != nil {
				return nil, err
			}
			w, ok := c.opt(1, "weight").(float64)
			if !ok {
				return nil, paramError("weight must be a number")
			}
			t.weight = w
			c.commit = true
			return nil, nil
		},
		"closeTask": func(c *call, ho *host) (any, error) { return c.finishTask(ho, TaskClosed) },
		"failTask":  func(c *call, ho *host) (any, error) { return c.finishTask(ho, TaskFailed) },
		"refuseTask": func(c *call, ho *host) (any, error) {
			t, err := c.taskArg(0)
			if err != nil {
				return nil, err
			}
			if t.host != ho || (t.state != TaskOpen && t.state != TaskAssigned) {
				return nil, notAllowed("host %d does not own task %d", ho.id, t.id)
			}
			t.refusedBy[ho.id] = true
			t.state, t.host = TaskFree, nil
			c.commit = true
			return nil, nil
		},
		"freeTasks": func(c *call, ho *host) (any, error) {
			ids, _ := c.opt(0, "tasks").([]any)
			for _, v := range ids {
				id, _ := toInt(v, "task")
				if t := c.h.tasks[id]; t != nil && t.host == ho && (t.state == TaskOpen || t.state == TaskAssigned) {
					t.state, t.host = TaskFree, nil
				}
			}
			c.commit = true
			return nil, nil
		},
		"subtask": func(c *call, ho *host) (any, error) {
			if len(c.args) < 3 {
				return nil, paramError("subtask takes at least 3 arguments")
			}
			method, _ := c.args[0].(string)
			arglist, ok := c.args[1].([]any)
			if !ok {
				return nil, paramError("arglist must be a list")
			}
			parent, err := c.ownedTask(ho, 2)
			if err != nil {
				return nil, err
			}
			if _, bad := c.kw["owner"]; bad {
				return nil, generic("owner option is not allowed here")
			}
			label, _ := c.kw["label"].(string)
			if label != "" {
				for _, t := range c.h.tasks {
					if t.parent == parent.id && t.label == label {
						return t.id, nil
					}
				}
			}
			if kw, ok := c.kw["kwargs"].(map[string]any); ok {
				m := map[string]any{"__starstar": true}
				for k, v := range kw {
					m[k] = v
				}
				arglist = append(arglist, m)
			}
			arch := parent.arch
			if a, ok := c.kw["arch"].(string); ok {
				arch = a
			}
			channel := parent.channel
			if ch, ok := c.kw["channel"].(string); ok {
				channel = c.h.channels[ch]
			}
			t := c.h.newTask(parent.owner, method, arglist, channel, arch, parent.priority-1, parent.id, label)
			c.commit = true
			return t.id, nil
		},
		"taskSetWait": func(c *call, ho *host) (any, error) {
			parent, err := c.ownedTask(ho, 0)
			if err != nil {
				return nil, err
			}
			parent.waiting = true
			for _, t := range c.h.children(parent.id, c.opt(1, "tasks")) {
				t.awaited = true
			}
			c.commit = true
			return nil, nil
		},
		"taskWait": func(c *call, ho *host) (any, error) {
			parent, err := c.ownedTask(ho, 0)
			if err != nil {
				return nil, err
			}
			finished, unfinished := []any{}, []any{}
			for _, t := range c.h.children(parent.id, nil) {
				if !t.awaited {
					continue
				}
				if isDone(t.state) {
					finished = append(finished, t.id)
					t.awaited = false
				} else {
					unfinished = append(unfinished, t.id)
				}
			}
			c.commit = true
			return []any{finished, unfinished}, nil
		},
		"taskWaitResults": func(c *call, ho *host) (any, error) {
			parent, err := c.ownedTask(ho, 0)
			if err != nil {
				return nil, err
			}
			canfail := map[int]bool{}
			if cf, ok := c.opt(2, "canfail").([]any); ok {
				for _, v := range cf {
					id, _ := toInt(v, "canfail")
					canfail[id] = true
				}
			}
			out := []any{}
			for _, t := range c.h.children(parent.id, c.opt(1, "tasks")) {
				res, err := t.decodedResult()
				if err != nil {
					var f *koji.Fault
					if canfail[t.id] && errors.As(err, &f) {
						res = map[string]any{"faultCode": int64(f.Code), "faultString": f.String}
					} else {
						return nil, err
					}
				}
				out = append(out, []any{t.id, res})
			}
			parent.waiting = false
			c.commit = true
			return out, nil
		},
		"initImageBuild": func(c *call, ho *host) (any, error) {
			t, err := c.ownedTask(ho, 0)
			if err != nil {
				return nil, err
			}
			bi, ok := c.opt(1, "build_info").(map[string]any)
			if !ok {
				return nil, paramError("build_info must be a struct")
			}
			name, _ := bi["name"].(string)
			version, _ := bi["version"].(string)
			release, _ := bi["release"].(string)
			if bi["release"] == nil {
				r, err := c.nextReleaseFor(name, version)
				if err != nil {
					return nil, err
				}
				release = r
			}
			if err := checkNVR(name, version, release); err != nil {
				return nil, err
			}
			b, err := c.h.newBuild(name, version, release, bi["epoch"], t.owner)
			if err != nil {
				return nil, err
			}
			b.taskID, b.image = t.id, true
			c.commit = true
			return map[string]any{"id": b.id, "name": name, "version": version, "release": release, "epoch": b.epoch,
				"task_id": t.id, "owner": t.owner.ID, "state": b.state, "completion_time": nil}, nil
		},
		"completeImageBuild":      (*call).completeImageBuild,
		"moveImageBuildToScratch": (*call).moveImageBuildToScratch,
		"failBuild": func(c *call, ho *host) (any, error) {
			if _, err := c.ownedTask(ho, 0); err != nil {
				return nil, err
			}
			id, err := c.integer(1, "build_id")
			if err != nil {
				return nil, err
			}
			b := c.h.builds[id]
			if b == nil || b.state != StateBuilding || !b.completion.IsZero() {
				return nil, generic("Build %d is not building", id)
			}
			b.state, b.completion = StateFailed, c.h.now()
			c.commit = true
			return nil, nil
		},
		"tagBuild": func(c *call, ho *host) (any, error) {
			if _, err := c.ownedTask(ho, 0); err != nil {
				return nil, err
			}
			tg := c.h.findTag(c.opt(1, "tag"))
			if tg == nil {
				return nil, errNoSuch("tag", c.opt(1, "tag"))
			}
			b := c.h.findBuild(c.opt(2, "build"))
			if b == nil {
				return nil, errNoSuch("build", c.opt(2, "build"))
			}
			if b.state != StateComplete {
				return nil, &koji.Fault{Code: koji.CodeTag, String: fmt.Sprintf("build %s not complete: state %s", fmtNVR(b.name, b.version, b.release), stateName(b.state))}
			}
			if !slices.Contains(tg.builds, b.id) {
				tg.builds = append(tg.builds, b.id)
			}
			c.commit = true
			return nil, nil
		},
	}
	for name, fn := range hm {
		fn := fn
		hostMethods[name] = func(c *call) (any, error) {
			ho, err := c.h.verifyHost(c.sess)
			if err != nil {
				return nil, err
			}
			return fn(c, ho)
		}
	}
}

func isDone(state int) bool {
	return state == TaskClosed || state == TaskCanceled || state == TaskFailed
}

func sortedTaskIDs(h *Hub) []int {
	ids := make([]int, 0, len(h.tasks))
	for id := range h.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (h *Hub) awaitedFinished(parent int) bool {
	for _, t := range h.children(parent, nil) {
		if t.awaited && isDone(t.state) {
			return true
		}
	}
	return false
}

// children returns the child tasks of parent, limited to ids if it is a list.
func (h *Hub) children(parent int, ids any) []*task {
	want := map[int]bool{}
	list, limited := ids.([]any)
	for _, v := range list {
		id, _ := toInt(v, "task")
		want[id] = true
	}
	var out []*task
	for _, id := range sortedTaskIDs(h) {
		t := h.tasks[id]
		if t.parent == parent && (!limited || want[id]) {
			out = append(out, t)
		}
	}
	return out
}

func (h *Hub) assigned(ho *host) []any {
	out := []any{}
	for _, id := range sortedTaskIDs(h) {
		t := h.tasks[id]
		if t.state == TaskAssigned && t.host == ho {
			out = append(out, map[string]any{"id": t.id, "state": t.state, "channel_id": t.channel, "host_id": ho.id,
				"arch": t.arch, "method": t.method, "priority": t.priority, "create_ts": float64(t.created.UnixNano()) / 1e9})
		}
	}
	return out
}

// schedule assigns FREE tasks to ready hosts serving their channel and arch
// with spare capacity, lowest priority value first.
func (h *Hub) schedule() {
	h.checkTimeouts()
	ids := sortedTaskIDs(h)
	slices.SortStableFunc(ids, func(a, b int) int { return h.tasks[a].priority - h.tasks[b].priority })
	for _, id := range ids {
		t := h.tasks[id]
		if t.state != TaskFree {
			continue
		}
		for _, ho := range h.hosts {
			if !ho.ready || t.refusedBy[ho.id] || !slices.Contains(ho.channels, t.channel) {
				continue
			}
			if t.arch != "noarch" && !slices.Contains(ho.arches, t.arch) {
				continue
			}
			load, ntasks := 0.0, 0
			for _, o := range h.tasks {
				if o.host == ho && (o.state == TaskOpen || o.state == TaskAssigned) {
					ntasks++
					if !o.waiting {
						load += o.weight
					}
				}
			}
			if ho.capacity-load <= max(0, t.weight-5) || ntasks >= hostMaxJobs(ho) {
				continue
			}
			t.state, t.host, t.assigned = TaskAssigned, ho, h.now()
			break
		}
	}
}

func (c *call) taskArg(i int) (*task, error) {
	id, err := c.integer(i, "task_id")
	if err != nil {
		return nil, err
	}
	t := c.h.tasks[id]
	if t == nil {
		return nil, errNoSuch("task", id)
	}
	return t, nil
}

func (c *call) ownedTask(ho *host, i int) (*task, error) {
	id, err := c.integer(i, "task_id")
	if err != nil {
		return nil, err
	}
	if err := c.h.assertHost(id, ho); err != nil {
		return nil, err
	}
	return c.h.tasks[id], nil
}

func (c *call) finishTask(ho *host, state int) (any, error) {
	t, err := c.ownedTask(ho, 0)
	if err != nil {
		return nil, err
	}
	resp, err := c.str(1, "response")
	if err != nil {
		return nil, err
	}
	if _, err := koji.DecodeResponse(strings.NewReader(resp)); err != nil {
		var f *koji.Fault
		if !errors.As(err, &f) {
			return nil, generic("invalid task response: %v", err)
		}
	}
	t.state, t.result, t.completed, t.waiting = state, resp, c.h.now(), false
	c.commit = true
	return nil, nil
}

func (t *task) decodedResult() (any, error) {
	switch t.state {
	case TaskCanceled:
		return nil, generic("Task %d is canceled", t.id)
	case TaskClosed, TaskFailed:
		return koji.DecodeResponse(strings.NewReader(t.result))
	}
	return nil, generic("Task %d is not finished", t.id)
}

func (c *call) getTaskInfo() (any, error) {
	if err := c.arity(1, 3); err != nil {
		return nil, err
	}
	if ids, ok := c.args[0].([]any); ok {
		out := []any{}
		for _, v := range ids {
			id, _ := toInt(v, "task_id")
			if t := c.h.tasks[id]; t != nil {
				out = append(out, c.h.taskInfo(t, c.opt(1, "request") == true))
			} else {
				out = append(out, nil)
			}
		}
		return out, nil
	}
	id, err := c.integer(0, "task_id")
	if err != nil {
		return nil, err
	}
	t := c.h.tasks[id]
	if t == nil {
		if c.opt(2, "strict") == true {
			return nil, errNoSuch("task", id)
		}
		return nil, nil
	}
	return c.h.taskInfo(t, c.opt(1, "request") == true), nil
}

func (c *call) getTaskResult() (any, error) {
	t, err := c.taskArg(0)
	if err != nil {
		return nil, err
	}
	res, err := t.decodedResult()
	var f *koji.Fault
	if err != nil && errors.As(err, &f) && t.state == TaskFailed && c.opt(1, "raise_fault") == false {
		return map[string]any{"faultCode": int64(f.Code), "faultString": f.String}, nil
	}
	return res, err
}

func (h *Hub) taskDir(id int) string {
	return filepath.Join(h.Dir, "work", "tasks", fmt.Sprint(id%10000), fmt.Sprint(id))
}

func (c *call) listTaskOutput() (any, error) {
	t, err := c.taskArg(0)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(c.h.taskDir(t.id))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	stat := c.opt(1, "stat") == true
	names := []any{}
	stats := map[string]any{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if stat {
			fi, err := e.Info()
			if err != nil {
				return nil, err
			}
			mt := float64(fi.ModTime().UnixNano()) / 1e9
			stats[e.Name()] = map[string]any{"st_size": fmt.Sprint(fi.Size()), "st_mtime": mt, "st_ctime": mt, "st_atime": mt}
		} else {
			names = append(names, e.Name())
		}
	}
	if stat {
		return stats, nil
	}
	return names, nil
}

func (c *call) downloadTaskOutput() (any, error) {
	if err := c.arity(2, 5); err != nil {
		return nil, err
	}
	t, err := c.taskArg(0)
	if err != nil {
		return nil, err
	}
	name, err := c.str(1, "fileName")
	if err != nil {
		return nil, err
	}
	if strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return nil, generic("Invalid file name: %s", name)
	}
	offset, size := 0, -1
	if v := c.opt(2, "offset"); v != nil {
		offset, _ = toInt(v, "offset")
	}
	if v := c.opt(3, "size"); v != nil {
		size, _ = toInt(v, "size")
	}
	f, err := os.Open(filepath.Join(c.h.taskDir(t.id), name))
	if err != nil {
		return nil, generic("no file %s output by task %d", name, t.id)
	}
	defer f.Close()
	if _, err := f.Seek(int64(offset), io.SeekStart); err != nil {
		return nil, err
	}
	var r io.Reader = f
	if size >= 0 {
		r = io.LimitReader(f, int64(size))
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (c *call) cancelTask() (any, error) {
	t, err := c.taskArg(0)
	if err != nil {
		return nil, err
	}
	if c.sess == nil || (t.owner != c.sess.user && !c.hasPerm("admin")) {
		return nil, notAllowed("Cannot cancel task, not owner")
	}
	var cancel func(t *task)
	cancel = func(t *task) {
		if !isDone(t.state) {
			t.state, t.completed = TaskCanceled, c.h.now()
		}
		for _, b := range c.h.builds {
			if b.taskID == t.id && b.state == StateBuilding {
				b.state = StateCanceled
			}
		}
		for _, ch := range c.h.children(t.id, nil) {
			cancel(ch)
		}
	}
	cancel(t)
	c.commit = true
	return nil, nil
}

// userTagBuild is tagBuild(tag, build, force=False, fromtag=None): it checks
// and creates a tagBuild task in channel default.
func (c *call) userTagBuild() (any, error) {
	if err := c.arity(2, 4); err != nil {
		return nil, err
	}
	if _, err := c.user(); err != nil {
		return nil, err
	}
	tg := c.h.findTag(c.args[0])
	if tg == nil {
		return nil, errNoSuch("tag", c.args[0])
	}
	b := c.h.findBuild(c.args[1])
	if b == nil {
		return nil, errNoSuch("build", c.args[1])
	}
	if b.state != StateComplete {
		return nil, &koji.Fault{Code: koji.CodeTag, String: fmt.Sprintf("build %s not complete: state %s", fmtNVR(b.name, b.version, b.release), stateName(b.state))}
	}
	t := c.h.newTask(c.sess.user, "tagBuild", []any{int64(tg.id), int64(b.id), false, nil}, c.h.channels["default"], "noarch", 10, 0, "")
	c.commit = true
	return t.id, nil
}

func (c *call) nextReleaseFor(name, version string) (string, error) {
	var last *build
	for _, b := range c.h.builds {
		if b.name == name && b.version == version && b.state != StateFailed && b.state != StateCanceled {
			if last == nil || b.id > last.id {
				last = b
			}
		}
	}
	if last == nil {
		return "1", nil
	}
	return nextRelease(last.release, 1)
}

func init() {
	methods["getTaskChildren"] = (*call).getTaskChildren
	methods["getHost"] = (*call).getHost
	methods["imageBuilderBuild"] = (*call).imageBuilderBuild
	methods["listBuilds"] = (*call).listBuilds
	methods["listRPMs"] = (*call).listRPMs
	hostMethods["tagNotification"] = func(c *call) (any, error) {
		if _, err := c.h.verifyHost(c.sess); err != nil {
			return nil, err
		}
		return nil, nil
	}
}

// getTaskChildren is getTaskChildren(task_id, request=False, strict=False).
func (c *call) getTaskChildren() (any, error) {
	t, err := c.taskArg(0)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, ch := range c.h.children(t.id, nil) {
		out = append(out, c.h.taskInfo(ch, c.opt(1, "request") == true))
	}
	return out, nil
}

// getHost is getHost(hostInfo, strict=False, event=None) by id or name.
func (c *call) getHost() (any, error) {
	if err := c.arity(1, 3); err != nil {
		return nil, err
	}
	for _, ho := range c.h.hosts {
		if id, ok := c.args[0].(int64); (ok && int(id) == ho.id) || c.args[0] == ho.user.Name {
			return map[string]any{"id": ho.id, "user_id": ho.user.ID, "name": ho.user.Name, "arches": strings.Join(ho.arches, " "),
				"capacity": ho.capacity, "enabled": true, "ready": ho.ready, "task_load": ho.taskLoad,
				"update_ts": float64(ho.updated.UnixNano()) / 1e9}, nil
		}
	}
	if c.opt(1, "strict") == true {
		return nil, errNoSuch("host", c.args[0])
	}
	return nil, nil
}

// SchedulerTimeouts are the hub's scheduler settings (hub.conf); zero
// values mean Koji's defaults.
type SchedulerTimeouts struct {
	// ReadyTimeout marks a host not ready when it has not called
	// host.updateHost for this long (default 180s).
	ReadyTimeout time.Duration
	// AssignTimeout frees an ASSIGNED task its host did not open in time
	// (default 300s).
	AssignTimeout time.Duration
	// HostTimeout frees the OPEN tasks of a host that has not checked in
	// for this long (default 900s).
	HostTimeout time.Duration
}

// SetScheduler sets the scheduler's timeouts.
func (h *Hub) SetScheduler(s SchedulerTimeouts) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sched = s
}

// Down makes the hub answer every request with 503 Service Unavailable for
// d, as an httpd in front of a restarting hub does.
func (h *Hub) Down(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = h.now().Add(d)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func hostMaxJobs(ho *host) int {
	if m, ok := ho.data.(map[string]any); ok {
		if n, err := toInt(m["maxjobs"], "maxjobs"); err == nil && n > 0 {
			return n
		}
	}
	return 15
}

// checkTimeouts is the scheduler's check_hosts and check_active_tasks:
// silent hosts lose readiness and their open tasks, unopened assignments
// expire (a refusal if the host checked in after the assignment).
func (h *Hub) checkTimeouts() {
	now := h.now()
	ready := orDefault(h.sched.ReadyTimeout, 180*time.Second)
	assign := orDefault(h.sched.AssignTimeout, 300*time.Second)
	hostTO := orDefault(h.sched.HostTimeout, 900*time.Second)
	for _, ho := range h.hosts {
		if ho.ready && now.Sub(ho.updated) > ready {
			ho.ready = false
		}
	}
	for _, id := range sortedTaskIDs(h) {
		t := h.tasks[id]
		switch {
		case t.state == TaskOpen && t.host != nil && now.Sub(t.host.updated) > hostTO:
			t.state, t.host = TaskFree, nil
		case t.state == TaskAssigned && t.host != nil && now.Sub(t.assigned) > assign:
			if t.host.updated.After(t.assigned) {
				t.refusedBy[t.host.id] = true
			}
			t.state, t.host = TaskFree, nil
		}
	}
}

// HostTasks returns the ids of the tasks a host (by name) holds open or
// assigned.
func (h *Hub) HostTasks(name string) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int
	for _, id := range sortedTaskIDs(h) {
		t := h.tasks[id]
		if t.host != nil && t.host.user.Name == name && (t.state == TaskOpen || t.state == TaskAssigned) {
			out = append(out, id)
		}
	}
	return out
}

// HostReady reports a host's readiness as it last reported it.
func (h *Hub) HostReady(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ho := range h.hosts {
		if ho.user.Name == name {
			return ho.ready
		}
	}
	return false
}

// TaskHost returns the name of the host that holds or last held a task.
func (h *Hub) TaskHost(id int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tasks[id]; t != nil && t.host != nil {
		return t.host.user.Name
	}
	return ""
}

// TaskResult returns the raw response string a finished task was closed or
// failed with.
func (h *Hub) TaskResult(id int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tasks[id]; t != nil {
		return t.result
	}
	return ""
}
