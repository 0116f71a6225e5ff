package kojid

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

func countCalls(calls []string, method string) int {
	n := 0
	for _, c := range calls {
		if c == method {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHubDownMidBuild: the hub answers 503 for 30 s while an arch task
// builds; the build finishes, every task is closed exactly once and the
// build is imported and tagged.
func TestHubDownMidBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("the hub is down for 30 s")
	}
	e := newEnv(t)
	started := make(chan struct{}, 1)
	b := &fastBuilder{delay: 2 * time.Second, fail: func(BuildRequest) error { return nil }}
	b.onStart = func() {
		select {
		case started <- struct{}{}:
		default:
		}
	}
	e.startHost(t, "builder1", []string{"x86_64"}, b)
	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "survivor", "1", opts("repos", []any{"http://x/debian"}))
	<-started
	e.hub.Down(30 * time.Second)
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	calls := e.hub.Calls()
	if n := countCalls(calls, "host.closeTask"); n != 3 {
		t.Errorf("host.closeTask called %d times, want 3 (parent, arch, tag)", n)
	}
	if n := countCalls(calls, "host.completeImageBuild"); n != 1 {
		t.Errorf("host.completeImageBuild called %d times", n)
	}
	bld, err := e.user.GetBuild(context.Background(), "survivor-1-1")
	if err != nil || bld.State != koji.BuildComplete {
		t.Fatalf("build %+v %v", bld, err)
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 1 {
		t.Errorf("tagged %v", got)
	}
	if n := b.Calls(); n != 1 {
		t.Errorf("built %d times", n)
	}
}

// severable is a transport that can be cut, so a daemon falls silent as a
// SIGKILLed process does: nothing it does afterwards reaches the hub.
type severable struct {
	cut atomic.Bool
}

func (s *severable) RoundTrip(r *http.Request) (*http.Response, error) {
	if s.cut.Load() {
		return nil, errors.New("host is dead")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestHostKilledMidBuild: builder1 dies (falls silent) while building; the
// hub frees its tasks after HostTimeout and builder2 completes the same
// task, reusing the image build row: one build, complete and tagged.
func TestHostKilledMidBuild(t *testing.T) {
	e := newEnv(t)
	e.hub.SetScheduler(kojitest.SchedulerTimeouts{ReadyTimeout: time.Second, HostTimeout: 2 * time.Second})
	started := make(chan struct{}, 1)
	slow := &fastBuilder{delay: time.Hour}
	slow.onStart = func() { started <- struct{}{} }
	e.hub.AddHost("builder1", "pw-builder1", []string{"x86_64"}, "image", "default")
	tr := &severable{}
	c, err := koji.New(e.hub.URL, koji.Options{HTTPClient: &http.Client{Transport: tr}, Retry: koji.RetryPolicy{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(context.Background(), "builder1", "pw-builder1"); err != nil {
		t.Fatal(err)
	}
	d1 := &Daemon{Hub: c, Handlers: map[string]Handler{
		"imageBuilderBuild": ImageBuilderBuild{}, "imageBuilderBuildArch": ImageBuilderBuildArch{Builder: slow}, "tagBuild": TagBuild{}},
		Log: testLogger(t).With("host", "builder1"), WorkDir: t.TempDir(), Interval: 100 * time.Millisecond,
		WaitPoll: 200 * time.Millisecond, MinSpace: -1, MaxLoad: -1}
	ctx1, kill := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- d1.Run(ctx1) }()

	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "phoenix", "1", opts("repos", []any{"http://x/debian"}))
	<-started
	tr.cut.Store(true) // SIGKILL: from now on builder1 says nothing
	kill()
	<-done1
	held := e.hub.HostTasks("builder1")
	if len(held) != 2 {
		t.Fatalf("builder1 holds %v after dying, want the parent and the arch task", held)
	}
	e.startHost(t, "builder2", []string{"x86_64"}, &fastBuilder{})
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	var builds []koji.Build
	if err := e.user.CallInto(context.Background(), &builds, "listBuilds", koji.Kwargs{"taskID": id}); err != nil {
		t.Fatal(err)
	}
	if len(builds) != 1 || builds[0].NVR != "phoenix-1-1" || builds[0].State != koji.BuildComplete {
		t.Fatalf("builds of task %d: %+v", id, builds)
	}
	for _, tid := range []int{int(id), held[1]} {
		if h := e.hub.TaskHost(tid); h != "builder2" {
			t.Errorf("task %d finished on %q", tid, h)
		}
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 1 {
		t.Errorf("tagged %v", got)
	}
}

// TestOneArchFails: aarch64 fails; the parent fails with its fault, the
// build is FAILED and nothing is tagged. With failable_arches it succeeds.
func TestOneArchFails(t *testing.T) {
	e := newEnv(t)
	b := &fastBuilder{fail: func(r BuildRequest) error {
		if r.Arch == "aarch64" {
			return errors.New("mmdebstrap: E: aarch64 exploded")
		}
		return nil
	}}
	e.startHost(t, "builder1", []string{"x86_64", "aarch64"}, b)
	id := e.submit(t, "debian-12", []any{}, []any{"tar"}, "halfway", "1", opts("repos", []any{"http://x/debian"}))
	if _, err := e.watch(t, id); err == nil {
		t.Fatal("task succeeded")
	}
	_, err := taskResult(t, e.user, id)
	if err == nil || !strings.Contains(err.Error(), "aarch64 exploded") {
		t.Errorf("parent fault %v", err)
	}
	bld, err := e.user.GetBuild(context.Background(), "halfway-1-1")
	if err != nil || bld.State != koji.BuildFailed {
		t.Fatalf("build %+v %v", bld, err)
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 0 {
		t.Errorf("tagged %v", got)
	}

	id = e.submit(t, "debian-12", []any{}, []any{"tar"}, "halfway", "1", opts("repos", []any{"http://x/debian"}, "failable_arches", []any{"aarch64"}))
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	var builds []koji.Build
	if err := e.user.CallInto(context.Background(), &builds, "listBuilds", koji.Kwargs{"taskID": id}); err != nil || len(builds) != 1 {
		t.Fatalf("builds of task %d: %v %v", id, builds, err)
	}
	bld = &builds[0]
	if bld.State != koji.BuildComplete {
		t.Fatalf("build %+v", bld)
	}
	arcs, _ := e.user.ListArchives(context.Background(), bld.ID, "image")
	for _, a := range arcs {
		if a.Arch != "x86_64" {
			t.Errorf("archive %s of arch %s", a.Filename, a.Arch)
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes for the test.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the disk-full test mounts a tmpfs and needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFull: the work dir fills up during the build; the task fails
// with the reason, the build is FAILED and has no archives. A host below
// its minimum free space reports itself not ready.
func TestDiskFull(t *testing.T) {
	e := newEnv(t)
	small := mountTmpfs(t, 2<<20)
	b := &fastBuilder{bigImage: 8 << 20}
	dh := e.startHostIn(t, "builder1", []string{"x86_64"}, b, small, -1)
	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "fatty", "1", opts("repos", []any{"http://x/debian"}))
	if _, err := e.watch(t, id); err == nil {
		t.Fatal("task succeeded")
	}
	_, err := taskResult(t, e.user, id)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("fault %v", err)
	}
	bld, err := e.user.GetBuild(context.Background(), "fatty-1-1")
	if err != nil || bld.State != koji.BuildFailed {
		t.Fatalf("build %+v %v", bld, err)
	}
	if arcs, _ := e.user.ListArchives(context.Background(), bld.ID, ""); len(arcs) != 0 {
		t.Errorf("archives of a failed build: %v", arcs)
	}
	dh.stop(t)

	e.startHostIn(t, "builder2", []string{"x86_64"}, b, small, 1<<30)
	n := countCalls(e.hub.Calls(), "host.updateHost")
	waitFor(t, "builder2 checking in", 10*time.Second, func() bool { return countCalls(e.hub.Calls(), "host.updateHost") > n+2 })
	if e.hub.HostReady("builder2") {
		t.Error("builder2 is ready with less free space than --min-space")
	}
	id = e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "never", "1", opts("repos", []any{"http://x/debian"}))
	time.Sleep(time.Second)
	if st := e.hub.TaskState(int(id)); st != kojitest.TaskFree {
		t.Errorf("task state %d on a host without space", st)
	}
}

// TestShutdownFreesTasks: on SIGTERM (ctx canceled) the daemon stops its
// build, hands its tasks back, reports itself not ready and logs out; a
// second host then completes the task with the same image build.
func TestShutdownFreesTasks(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	slow := &fastBuilder{delay: time.Hour, onStart: func() { started <- struct{}{} }}
	dh := e.startHost(t, "builder1", []string{"x86_64"}, slow)
	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "graceful", "1", opts("repos", []any{"http://x/debian"}))
	<-started
	// While the build runs, the host keeps checking in.
	n := countCalls(e.hub.Calls(), "host.updateHost")
	waitFor(t, "check-ins during the build", 10*time.Second, func() bool { return countCalls(e.hub.Calls(), "host.updateHost") >= n+3 })
	dh.stop(t)
	if held := e.hub.HostTasks("builder1"); len(held) != 0 {
		t.Fatalf("builder1 still holds %v after shutdown", held)
	}
	if e.hub.HostReady("builder1") {
		t.Error("builder1 is still ready after shutdown")
	}
	if st := e.hub.TaskState(int(id)); st != kojitest.TaskFree {
		t.Errorf("task state %d after shutdown, want free", st)
	}
	e.startHost(t, "builder2", []string{"x86_64"}, &fastBuilder{})
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	var builds []koji.Build
	if err := e.user.CallInto(context.Background(), &builds, "listBuilds", koji.Kwargs{"taskID": id}); err != nil {
		t.Fatal(err)
	}
	if len(builds) != 1 || builds[0].State != koji.BuildComplete {
		t.Fatalf("builds %+v", builds)
	}
}

// TestRestartAfterCrash: a host that crashed and starts again frees the
// tasks the hub still gives it (it no longer runs them), and then runs
// them anew.
func TestRestartAfterCrash(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	e.hub.AddHost("builder1", "pw-builder1", []string{"x86_64"}, "image", "default")
	tr := &severable{}
	c, err := koji.New(e.hub.URL, koji.Options{HTTPClient: &http.Client{Transport: tr}, Retry: koji.RetryPolicy{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(context.Background(), "builder1", "pw-builder1"); err != nil {
		t.Fatal(err)
	}
	slow := &fastBuilder{delay: time.Hour, onStart: func() { started <- struct{}{} }}
	d1 := &Daemon{Hub: c, Handlers: map[string]Handler{
		"imageBuilderBuild": ImageBuilderBuild{}, "imageBuilderBuildArch": ImageBuilderBuildArch{Builder: slow}, "tagBuild": TagBuild{}},
		WorkDir: t.TempDir(), Interval: 100 * time.Millisecond, WaitPoll: 200 * time.Millisecond, MinSpace: -1, MaxLoad: -1}
	ctx1, kill := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- d1.Run(ctx1) }()
	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "lazarus", "1", opts("repos", []any{"http://x/debian"}))
	<-started
	tr.cut.Store(true)
	kill()
	<-done1
	if held := e.hub.HostTasks("builder1"); len(held) != 2 {
		t.Fatalf("held %v", held)
	}
	// The same host comes back (new process, new session).
	c2, err := e.hub.Connector("builder1", "pw-builder1")(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d2 := &Daemon{Hub: c2, Handlers: map[string]Handler{
		"imageBuilderBuild": ImageBuilderBuild{}, "imageBuilderBuildArch": ImageBuilderBuildArch{Builder: &fastBuilder{}}, "tagBuild": TagBuild{}},
		Log: testLogger(t), WorkDir: t.TempDir(), Interval: 100 * time.Millisecond, WaitPoll: 200 * time.Millisecond, MinSpace: -1, MaxLoad: -1}
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- d2.Run(ctx2) }()
	defer func() { stop2(); <-done2 }()
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	if n := countCalls(e.hub.Calls(), "host.freeTasks"); n < 1 {
		t.Errorf("the restarted host freed nothing")
	}
	var builds []koji.Build
	if err := e.user.CallInto(context.Background(), &builds, "listBuilds", koji.Kwargs{"taskID": id}); err != nil || len(builds) != 1 || builds[0].State != koji.BuildComplete {
		t.Fatalf("builds %+v %v", builds, err)
	}
}
