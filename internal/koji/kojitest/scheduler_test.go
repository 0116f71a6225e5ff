package kojitest

import (
	"context"
	"testing"
	"time"
)

// TestSchedulerTimeouts: a host that stops checking in loses readiness and
// its open tasks; an assignment not opened in time is freed and counted as
// a refusal; maxjobs caps the tasks a host gets.
func TestSchedulerTimeouts(t *testing.T) {
	ctx := context.Background()
	h := New(t, Options{})
	now := time.Now()
	h.now = func() time.Time { return now }
	h.AddUser("alice", "pw", "image")
	h.AddHost("b1", "pw1", []string{"x86_64"}, "image")
	c, err := h.Connector("b1", "pw1")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateHost(ctx, 0, true, map[string]any{"maxjobs": 1}); err != nil {
		t.Fatal(err)
	}
	a := h.MakeTask("alice", "imageBuilderBuild", nil, "image", "noarch")
	b := h.MakeTask("alice", "imageBuilderBuild", nil, "image", "noarch")
	got, err := c.GetTasks(ctx)
	if err != nil || len(got) != 1 || got[0].ID != int64(a) {
		t.Fatalf("maxjobs 1: got %+v %v", got, err)
	}
	if ti, err := c.OpenTask(ctx, int64(a)); err != nil || ti == nil {
		t.Fatalf("open: %v", err)
	}
	// Silent for longer than HostTimeout: the open task is freed.
	now = now.Add(901 * time.Second)
	h.mu.Lock()
	h.schedule()
	h.mu.Unlock()
	if h.TaskState(a) != TaskFree || h.HostReady("b1") {
		t.Fatalf("after host timeout: task %d state %d, ready %v", a, h.TaskState(a), h.HostReady("b1"))
	}
	// Back, it gets a task but does not open it within AssignTimeout.
	if err := c.UpdateHost(ctx, 0, true, map[string]any{"maxjobs": 1}); err != nil {
		t.Fatal(err)
	}
	if got, err = c.GetTasks(ctx); err != nil || len(got) != 1 {
		t.Fatalf("got %+v %v", got, err)
	}
	first := int(got[0].ID)
	now = now.Add(10 * time.Second)
	if err := c.UpdateHost(ctx, 0, true, map[string]any{"maxjobs": 1}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(300 * time.Second)
	if err := c.UpdateHost(ctx, 0, true, map[string]any{"maxjobs": 1}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetTasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.TaskState(first) == TaskAssigned && h.TaskHost(first) == "b1" {
		t.Fatalf("task %d still assigned after AssignTimeout", first)
	}
	for _, g := range got {
		if int(g.ID) == first {
			t.Errorf("task %d reassigned to the host that let it expire", first)
		}
	}
	_ = b
}
