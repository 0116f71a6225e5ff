package kojid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/kojiwatch"
	"github.com/kib-project/kib/internal/store"
)

// fastBuilder writes a small tar.xz "image" with manifest, SBOM and
// build-info per type, without running the engine; the fault tests use it.
// fail, if set, decides whether a request fails.
type fastBuilder struct {
	fail    func(req BuildRequest) error
	delay   time.Duration
	onStart func()
	// bigImage, if set, is the size of the image written.
	bigImage int
	mu       sync.Mutex
	calls    int
}

func (b *fastBuilder) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *fastBuilder) Build(ctx context.Context, req BuildRequest) ([]BuiltImage, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	if b.onStart != nil {
		b.onStart()
	}
	fmt.Fprintf(req.ToolLog, "fast build of %v for %s\n", req.Types, req.Arch)
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.fail != nil {
		if err := b.fail(req); err != nil {
			return nil, err
		}
	}
	var out []BuiltImage
	for _, typ := range req.Types {
		dir := filepath.Join(req.OutputDir, typ)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		img := filepath.Join(dir, "root.tar.xz")
		data := []byte(fmt.Sprintf("image %s %s %v", typ, req.Arch, req.Repos))
		if b.bigImage > 0 {
			data = make([]byte, b.bigImage)
		}
		if err := os.WriteFile(img, data, 0o644); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		for _, f := range []string{img + ".manifest.json", img + ".image-os.spdx.json"} {
			if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
				return nil, err
			}
		}
		bi := &buildinfo.BuildInfo{Arch: req.Arch, BootMode: "none", ExportName: "archive", ExportFilename: "root.tar.xz",
			SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Distro: "debian-12", ImageType: typ,
			Packages: []buildinfo.Package{{Name: "base-files", Version: "12.4+deb12u5", Arch: "amd64", SHA256: strings.Repeat("a", 64)},
				{Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64", SHA256: strings.Repeat("b", 64)}}}
		out = append(out, BuiltImage{Path: img, Manifest: img + ".manifest.json", SBOMs: []string{img + ".image-os.spdx.json"}, Info: bi})
	}
	return out, nil
}

type testEnv struct {
	hub  *kojitest.Hub
	user *koji.Client
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	h := kojitest.New(t, kojitest.Options{})
	h.AddUser("alice", "secret", "image")
	h.AddUser("bob", "secret")
	h.AddTag("debian-12-build", "x86_64 aarch64", "", nil)
	h.AddTag("debian-12-images", "", "", nil)
	h.AddTarget("debian-12", "debian-12-build", "debian-12-images")
	h.AddRepo("debian-12-build")
	c, err := h.Connector("alice", "secret")(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{hub: h, user: c}
}

type daemonHandle struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
	d      *Daemon
}

func (dh *daemonHandle) stop(t *testing.T) {
	t.Helper()
	dh.cancel()
	select {
	case <-dh.done:
		if dh.err != nil {
			t.Errorf("daemon: %v", dh.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("daemon did not stop")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startHost enrolls a host and runs a daemon for it until the test ends.
func (e *testEnv) startHost(t *testing.T, name string, arches []string, b Builder) *daemonHandle {
	t.Helper()
	return e.startHostIn(t, name, arches, b, t.TempDir(), -1)
}

// startHostIn enrolls a host and runs its daemon with a work dir and
// minimum free space.
func (e *testEnv) startHostIn(t *testing.T, name string, arches []string, b Builder, workDir string, minSpace int64) *daemonHandle {
	t.Helper()
	e.hub.AddHost(name, "pw-"+name, arches, "image", "default")
	c, err := e.hub.Connector(name, "pw-"+name)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		Hub: c,
		Handlers: map[string]Handler{
			"imageBuilderBuild":     ImageBuilderBuild{},
			"imageBuilderBuildArch": ImageBuilderBuildArch{Builder: b},
			"tagBuild":              TagBuild{},
		},
		Log:      testLogger(t).With("host", name),
		WorkDir:  workDir,
		Interval: 100 * time.Millisecond,
		WaitPoll: 200 * time.Millisecond,
		MinSpace: minSpace,
		MaxLoad:  -1,
	}
	ctx, cancel := context.WithCancel(context.Background())
	dh := &daemonHandle{cancel: cancel, done: make(chan struct{}), d: d}
	go func() {
		dh.err = d.Run(ctx)
		close(dh.done)
	}()
	t.Cleanup(func() { dh.stop(t) })
	return dh
}

func (e *testEnv) submit(t *testing.T, args ...any) int64 {
	t.Helper()
	var id int64
	if err := e.user.CallInto(context.Background(), &id, "imageBuilderBuild", args...); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *testEnv) watch(t *testing.T, id int64) (map[int64]*kojiwatch.Task, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out strings.Builder
	tasks, err := kojiwatch.Watch(ctx, e.user, []int64{id}, kojiwatch.Options{Interval: 100 * time.Millisecond, Out: &out})
	t.Log("watch-task output:\n" + out.String())
	return tasks, err
}

func taskResult(t *testing.T, c *koji.Client, id int64) (any, error) {
	t.Helper()
	return c.GetTaskResult(context.Background(), id)
}

func opts(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestImageBuilderBuildTwoHosts(t *testing.T) {
	e := newEnv(t)
	b := &fastBuilder{delay: 300 * time.Millisecond}
	e.startHost(t, "builder1", []string{"x86_64"}, b)
	e.startHost(t, "builder2", []string{"x86_64", "aarch64"}, b)
	id := e.submit(t, "debian-12", []any{"x86_64", "aarch64"}, []any{"tar"}, "debian-base", "12",
		opts("repos", []any{"http://deb.example/debian bookworm main"}))
	tasks, err := e.watch(t, id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := taskResult(t, e.user, id)
	if err != nil {
		t.Fatal(err)
	}
	if res != "image build results in: /mnt/koji/packages/debian-base/12/1/images" {
		t.Errorf("result %q", res)
	}
	methods := map[string]int{}
	for _, tk := range tasks {
		methods[tk.Method]++
		if tk.State != koji.TaskClosed {
			t.Errorf("task %d %s: state %d", tk.ID, tk.Method, tk.State)
		}
	}
	if methods["imageBuilderBuildArch"] != 2 || methods["tagBuild"] != 1 {
		t.Errorf("tasks %v", methods)
	}
	bld, err := e.user.GetBuild(context.Background(), "debian-base-12-1")
	if err != nil {
		t.Fatal(err)
	}
	if bld.State != koji.BuildComplete || bld.TaskID == nil || *bld.TaskID != id {
		t.Errorf("build %+v", bld)
	}
	arcs, err := e.user.ListArchives(context.Background(), bld.ID, "image")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range arcs {
		names = append(names, a.Filename+"@"+a.Arch)
	}
	for _, want := range []string{"debian-base-12-1.x86_64.tar.xz@x86_64", "debian-base-12-1.aarch64.tar.xz@aarch64",
		"debian-base-12-1.x86_64.tar.xz.manifest.json@x86_64", "debian-base-12-1.x86_64.tar.xz.image-os.spdx.json@x86_64"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("archive %s missing in %v", want, names)
		}
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 1 || int64(got[0]) != bld.ID {
		t.Errorf("tagged %v", got)
	}
	comps := e.hub.ImageComponents("debian-base-12-1.x86_64.tar.xz")
	if len(comps) != 2 || comps[1]["name"] != "bash" || comps[1]["version"] != "5.2.15" || comps[1]["release"] != "2+b2" {
		t.Errorf("components %v", comps)
	}
	logs, err := e.user.GetBuildLogs(context.Background(), bld.ID)
	if err != nil {
		t.Fatal(err)
	}
	var logNames []string
	for _, l := range logs {
		logNames = append(logNames, l.Dir+"/"+l.Name)
	}
	if !strings.Contains(strings.Join(logNames, " "), "x86_64/build.log") || !strings.Contains(strings.Join(logNames, " "), "x86_64/task.log") {
		t.Errorf("logs %v", logNames)
	}
	// Both hosts took part.
	hosts := map[string]bool{}
	for _, tk := range tasks {
		hosts[e.hub.TaskHost(int(tk.ID))] = true
	}
	if !hosts["builder1"] || !hosts["builder2"] {
		t.Logf("hosts used: %v (the scheduler may give all to one)", hosts)
	}
}

func TestImageBuilderBuildScratchAndSkipTag(t *testing.T) {
	e := newEnv(t)
	b := &fastBuilder{}
	e.startHost(t, "builder1", []string{"x86_64"}, b)

	id := e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "scratchy", "1", opts("scratch", true, "repos", []any{"http://x/debian"}))
	tasks, err := e.watch(t, id)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := taskResult(t, e.user, id)
	var arch int64
	for _, tk := range tasks {
		if tk.Method == "imageBuilderBuildArch" {
			arch = tk.ID
		}
		if tk.Method == "tagBuild" {
			t.Error("scratch build was tagged")
		}
	}
	if want := fmt.Sprintf("Scratch image build results in: /mnt/koji/work/tasks/%d/%d", arch%10000, arch); res != want {
		t.Errorf("result %q, want %q", res, want)
	}
	if _, err := os.Stat(filepath.Join(e.hub.Dir, "scratch", "alice", fmt.Sprintf("task_%d", arch), "scratchy-1-1.x86_64.tar.xz")); err != nil {
		t.Errorf("scratch image: %v", err)
	}
	if _, err := e.user.GetBuild(context.Background(), "scratchy-1-1"); err == nil {
		t.Error("a scratch build made a build")
	}

	id = e.submit(t, "debian-12", []any{"x86_64"}, []any{"tar"}, "untagged", "1", opts("skip_tag", true, "release", "7", "repos", []any{"http://x/debian"}))
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	bld, err := e.user.GetBuild(context.Background(), "untagged-1-7")
	if err != nil || bld.State != koji.BuildComplete {
		t.Fatalf("build %+v %v", bld, err)
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 0 {
		t.Errorf("skip_tag build tagged: %v", got)
	}
}

func TestImageBuilderBuildBadArguments(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		name string
		args []any
		want string
	}{
		{"two types", []any{"debian-12", []any{}, []any{"tar", "qcow2"}, "n", "1", map[string]any{}}, "['tar', 'qcow2'] is too long"},
		{"unknown option", []any{"debian-12", []any{}, []any{"tar"}, "n", "1", map[string]any{"colour": "red"}}, "Additional properties are not allowed ('colour' was unexpected)"},
		{"arches not a list", []any{"debian-12", "x86_64", []any{"tar"}, "n", "1"}, "'x86_64' is not of type 'array'"},
		{"seed not integer", []any{"debian-12", []any{}, []any{"tar"}, "n", "1", map[string]any{"seed": "7"}}, "'7' is not of type 'integer'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.user.Call(ctx, "imageBuilderBuild", tc.args...)
			var f *koji.Fault
			if !errors.As(err, &f) || f.Code != koji.CodeParameter || !strings.HasPrefix(f.String, tc.want) {
				t.Fatalf("got %v, want ParameterError %q", err, tc.want)
			}
		})
	}
	bob, _ := e.hub.Connector("bob", "secret")(ctx)
	_, err := bob.Call(ctx, "imageBuilderBuild", "debian-12", []any{}, []any{"tar"}, "n", "1")
	if err == nil || !strings.Contains(err.Error(), "image permission required") {
		t.Errorf("without permission: %v", err)
	}
}

// TestImageBuilderBuildTaskFailures covers failures the task reports: an
// unknown target, an arch the build tag lacks, ostree options, and no repos.
func TestImageBuilderBuildTaskFailures(t *testing.T) {
	e := newEnv(t)
	e.startHost(t, "builder1", []string{"x86_64"}, &EngineBuilder{Store: nil})
	cases := []struct {
		name string
		args []any
		want string
	}{
		{"unknown target", []any{"nope", []any{}, []any{"tar"}, "n", "1", map[string]any{}}, "No such build target"},
		{"arch not in tag", []any{"debian-12", []any{"s390x"}, []any{"tar"}, "n", "1", map[string]any{}}, "Unsupported architecture(s): {'s390x'}"},
		{"ostree", []any{"debian-12", []any{"x86_64"}, []any{"tar"}, "n", "1", map[string]any{"ostree": map[string]any{"ref": "x"}}}, "does not build OSTree images"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := e.submit(t, tc.args...)
			if _, err := e.watch(t, id); err == nil {
				t.Fatal("task succeeded")
			}
			_, err := taskResult(t, e.user, id)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("result %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRefusesUnknownMethods(t *testing.T) {
	e := newEnv(t)
	e.startHost(t, "builder1", []string{"x86_64"}, &fastBuilder{})
	id := e.hub.MakeTask("alice", "createrepo", []any{int64(1)}, "image", "noarch")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e.hub.HostReady("builder1") && e.hub.TaskState(id) == kojitest.TaskFree && len(e.hub.HostTasks("builder1")) == 0 &&
			contains(e.hub.Calls(), "host.refuseTask") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task state %d, calls %v", e.hub.TaskState(id), e.hub.Calls()[len(e.hub.Calls())-5:])
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

var _ = json.Marshal

// TestBuildOptionsReachTheBuilder: every option of the hub plugin's schema
// that kib builds with arrives in the arch task's build request.
func TestBuildOptionsReachTheBuilder(t *testing.T) {
	e := newEnv(t)
	var got BuildRequest
	var mu sync.Mutex
	b := &fastBuilder{fail: func(r BuildRequest) error {
		mu.Lock()
		got = r
		mu.Unlock()
		return nil
	}}
	e.startHost(t, "builder1", []string{"aarch64"}, b)
	id := e.submit(t, "debian-12", []any{"aarch64"}, []any{"qcow2"}, "opts", "1", opts(
		"repos", []any{"http://deb.example/$arch/debian bookworm main", "[trusted=yes] http://extra.example/$basearch ./"},
		"distro", "debian-12", "seed", int64(42), "preview", true,
		"blueprint", map[string]any{"customizations": map[string]any{"hostname": "kib-host"}}))
	if _, err := e.watch(t, id); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Arch != "aarch64" || got.Distro != "debian-12" || got.Seed == nil || *got.Seed != 42 || got.Preview == nil || !*got.Preview {
		t.Errorf("request %+v", got)
	}
	wantRepos := []string{"http://deb.example/aarch64/debian bookworm main", "[trusted=yes] http://extra.example/aarch64 ./"}
	if strings.Join(got.Repos, "|") != strings.Join(wantRepos, "|") {
		t.Errorf("repos %q, want %q", got.Repos, wantRepos)
	}
	if c, _ := got.Blueprint["customizations"].(map[string]any); c["hostname"] != "kib-host" {
		t.Errorf("blueprint %v", got.Blueprint)
	}
	if strings.Join(got.Types, ",") != "qcow2" {
		t.Errorf("types %v", got.Types)
	}
}

// TestEngineBuilderRefusesBadRequests: the engine builder refuses what it
// cannot build before building anything, naming the field.
func TestEngineBuilderRefusesBadRequests(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	eb := &EngineBuilder{Store: st, CacheDir: dir}
	ctx := context.Background()
	log := testLogger(t)
	cases := []struct {
		req  BuildRequest
		want string
	}{
		{BuildRequest{Distro: "fedora-42", Arch: "x86_64", Types: []string{"tar"}, Log: log}, "opts.distro"},
		{BuildRequest{Arch: "s390x", Types: []string{"tar"}, Log: log}, "arch"},
		{BuildRequest{Arch: "x86_64", Types: []string{"minimal-raw"}, Log: log}, "types"},
		{BuildRequest{Arch: "x86_64", Types: []string{"tar"}, Repos: []string{"[bogus"}, Log: log}, "opts.repos"},
	}
	for _, tc := range cases {
		_, err := eb.Build(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.req, err, tc.want)
		}
	}
}
