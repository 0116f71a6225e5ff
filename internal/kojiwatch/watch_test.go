package kojiwatch

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// TestWatch drives a task tree by hand as a host would and checks the
// watcher's lines, the final states and the error for a failed task.
func TestWatch(t *testing.T) {
	ctx := context.Background()
	h := kojitest.New(t, kojitest.Options{})
	h.AddUser("alice", "pw", "image")
	h.AddHost("builder1", "hpw", []string{"x86_64"}, "image")
	user, err := h.Connector("alice", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, err := h.Connector("builder1", "hpw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := host.UpdateHost(ctx, 0, true, nil); err != nil {
		t.Fatal(err)
	}
	parent := int64(h.MakeTask("alice", "imageBuilderBuild", []any{"t"}, "image", "noarch"))
	ok := int64(h.MakeTask("alice", "imageBuilderBuild", []any{"t"}, "image", "noarch"))

	var out bytes.Buffer
	done := make(chan error, 1)
	var tasks map[int64]*Task
	go func() {
		var err error
		tasks, err = Watch(ctx, user, []int64{parent, ok}, Options{Interval: 20 * time.Millisecond, Out: &out})
		done <- err
	}()
	// The host opens both, makes a subtask, fails the parent, closes the other.
	if _, err := host.GetTasks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{parent, ok} {
		if ti, err := host.OpenTask(ctx, id); err != nil || ti == nil {
			t.Fatalf("open %d: %v", id, err)
		}
	}
	child, err := host.Subtask(ctx, "imageBuilderBuildArch", []any{"x"}, parent, koji.SubtaskOpts{Label: "x86_64", Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if ti, err := host.OpenTask(ctx, child); err != nil || ti == nil {
		t.Fatalf("open child: %v", err)
	}
	if err := host.FailTask(ctx, child, &koji.Fault{Code: koji.CodeBuild, String: "mmdebstrap failed"}); err != nil {
		t.Fatal(err)
	}
	if err := host.FailTask(ctx, parent, &koji.Fault{Code: koji.CodeBuild, String: "mmdebstrap failed"}); err != nil {
		t.Fatal(err)
	}
	if err := host.CloseTask(ctx, ok, "fine"); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("watch did not end")
	}
	var fe *FailedError
	if !errors.As(err, &fe) || len(fe.IDs) != 1 || fe.IDs[0] != parent {
		t.Fatalf("err %v, want FailedError for %d", err, parent)
	}
	if tasks[child] == nil || tasks[child].Level != 1 || tasks[child].State != koji.TaskFailed || tasks[ok].State != koji.TaskClosed {
		t.Errorf("tasks %+v", tasks)
	}
	text := out.String()
	for _, want := range []string{
		"Watching tasks (this may be safely interrupted)...",
		"1 imageBuilderBuild (noarch): free",
		"  3 imageBuilderBuildArch (x86_64): ",
		"FAILED: mmdebstrap failed",
		"1 imageBuilderBuild (noarch) failed",
		"2 imageBuilderBuild (noarch) completed successfully",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
