package kojid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/kojid"
	"github.com/kib-project/kib/internal/kojid/hosttest"
)

// The Koji server compose requests name; the compose service reaches the
// test hub at its own address.
const osbKojiServer = "https://koji.example.org/kojihub"

// osbBundle is a kojitest hub with a user allowed to create image tasks, a
// content generator user, a build host in the image channel, a target
// debian-12 (build tag with x86_64 and aarch64 and a repo, destination
// tag) and, in remote mode, a compose service (kib serve's API and queue)
// importing into the hub.
type osbBundle struct {
	hub     *kojitest.Hub
	user    *koji.Client
	host    *koji.Client
	builder *jobstest.Builder
	api     *httptest.Server
	handler *kojid.OSBuildImage
	q       *jobs.Queue // remote mode's compose queue
	// finished records when the compose service finished each compose's
	// last job (the bench's start point).
	mu       sync.Mutex
	finished []time.Time
}

func (b *osbBundle) JobDone(kind string, _ time.Duration, _ string) {
	if kind == jobs.KindKojiFinalize {
		b.mu.Lock()
		b.finished = append(b.finished, time.Now())
		b.mu.Unlock()
	}
}

func osbSetup(t testing.TB, local bool) *osbBundle {
	t.Helper()
	ctx := context.Background()
	b := &osbBundle{hub: kojitest.New(t, kojitest.Options{}), builder: &jobstest.Builder{}}
	b.hub.AddUser("alice", "pw", "image")
	b.hub.AddUser("bob", "pw")
	b.hub.AddUser("kib", "pw")
	b.hub.AddContentGenerator("kib", "kib")
	b.hub.AddHost("builder.example.org", "pw", []string{"x86_64", "aarch64"}, "image", "default")
	b.hub.AddTag("debian-12-build", "x86_64 aarch64", "", nil)
	b.hub.AddTag("debian-12-candidate", "", "", nil)
	b.hub.AddTarget("debian-12", "debian-12-build", "debian-12-candidate")
	b.hub.AddRepo("debian-12-build")
	var err error
	if b.user, err = b.hub.Connector("alice", "pw")(ctx); err != nil {
		t.Fatal(err)
	}
	if b.host, err = b.hub.Connector("builder.example.org", "pw")(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.host.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := b.host.UpdateHost(ctx, 0, true, nil); err != nil {
		t.Fatal(err)
	}
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := kojid.OSBuildConfig{KojiServer: osbKojiServer, TopURL: "https://koji.example.org/kojifiles", PollMin: 20 * time.Millisecond, PollMax: 200 * time.Millisecond}
	connect := b.hub.Connector("kib", "pw")
	if local {
		cfg.Local = &kojid.LocalConfig{StateDir: t.TempDir(), Builder: b.builder, Distros: cat, Connect: connect, Observer: b}
	} else {
		q := jobstest.StartQueue(t, jobs.Config{Workers: 2, Builder: b.builder, RetryDelay: 10 * time.Millisecond, Observer: b,
			Koji: &jobs.KojiHub{Server: osbKojiServer, Connect: connect}})
		h, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: osbKojiServer})
		if err != nil {
			t.Fatal(err)
		}
		b.q = q
		b.api = httptest.NewServer(h)
		t.Cleanup(b.api.Close)
		cfg.Composer = &kojid.ComposerConfig{Server: b.api.URL}
	}
	if b.handler, err = kojid.NewOSBuildImage(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.handler.Close(ctx); err != nil {
			t.Errorf("closing the handler: %v", err)
		}
	})
	return b
}

// runHost runs the host's tasks: osbuildImage with the handler, tagBuild
// as kojid's tagBuild handler does.
func (b *osbBundle) runHost(ctx context.Context, t testing.TB) {
	hosttest.Run(ctx, t, b.host, map[string]kojid.Handler{"osbuildImage": b.handler, "tagBuild": hosttest.TagBuild})
}

// waitTask waits for a task to finish and returns its result or fault.
func (b *osbBundle) waitTask(t testing.TB, id int64) (any, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		switch b.hub.TaskState(int(id)) {
		case kojitest.TaskClosed, kojitest.TaskFailed, kojitest.TaskCanceled:
			return b.user.GetTaskResult(context.Background(), id)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("task %d did not finish", id)
	return nil, nil
}

func (b *osbBundle) submit(t testing.TB, args ...any) int64 {
	t.Helper()
	var id int64
	if err := b.user.CallInto(context.Background(), &id, "osbuildImage", args...); err != nil {
		t.Fatalf("osbuildImage: %v", err)
	}
	return id
}

func (b *osbBundle) output(t testing.TB, id int64, name string) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if _, err := b.user.DownloadTaskOutput(context.Background(), id, name, &buf); err != nil {
		t.Fatalf("task %d output %s: %v", id, name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%s: %v: %s", name, err, buf.Bytes())
	}
	return m
}

func TestOSBuildImage(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote", true: "local"}[local], func(t *testing.T) {
			b := osbSetup(t, local)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); b.runHost(ctx, t) }()
			defer func() { cancel(); <-done }()

			opts := map[string]any{
				"repo":           []any{"http://deb.example.org/debian/$arch", map[string]any{"baseurl": "http://deb.example.org/extra", "package_sets": []any{"os"}}},
				"customizations": map[string]any{"packages": []any{"cloud-init"}},
			}
			id := b.submit(t, "Debian-Cloud", "12", "debian-12", "tar", "debian-12", []any{"x86_64"}, opts)
			res, err := b.waitTask(t, id)
			if err != nil {
				t.Fatalf("task failed: %v", err)
			}
			m, _ := res.(map[string]any)
			kb, _ := m["koji"].(map[string]any)
			cs, _ := m["composer"].(map[string]any)
			if kb == nil || cs == nil || cs["id"] == "" {
				t.Fatalf("result = %v, want {composer: {server, id}, koji: {build}}", res)
			}
			build, err := b.user.GetBuild(ctx, "Debian-Cloud-12-1")
			if err != nil || build == nil || build.State != koji.BuildComplete || kb["build"] != build.ID {
				t.Fatalf("build %+v (%v), result %v", build, err, res)
			}
			if build.TaskID == nil || *build.TaskID != id {
				t.Errorf("build task_id = %v, want %d", build.TaskID, id)
			}
			if tagged := b.hub.TaggedBuilds("debian-12-candidate"); len(tagged) != 1 || int64(tagged[0]) != build.ID {
				t.Errorf("destination tag holds %v, want build %d", tagged, build.ID)
			}
			archives, err := b.user.ListArchives(ctx, build.ID, "image")
			if err != nil || len(archives) != 3 {
				t.Errorf("archives: %d (%v), want 3: the image, its manifest and SBOM", len(archives), err)
			}

			req := b.output(t, id, "compose-request.json")
			ir, _ := req["image_requests"].([]any)
			if len(ir) != 1 || req["distribution"] != "debian-12" {
				t.Fatalf("compose-request.json = %v", req)
			}
			first := ir[0].(map[string]any)
			repos := first["repositories"].([]any)
			if first["architecture"] != "x86_64" || repos[0].(map[string]any)["baseurl"] != "http://deb.example.org/debian/x86_64" ||
				fmt.Sprint(repos[1].(map[string]any)["package_sets"]) != "[os]" || repos[0].(map[string]any)["rhsm"] != false {
				t.Errorf("image request 0 = %v", first)
			}
			kj := req["koji"].(map[string]any)
			if kj["server"] != osbKojiServer || kj["task_id"] != float64(id) || kj["release"] != "1" {
				t.Errorf("koji block = %v", kj)
			}
			st := b.output(t, id, "compose-status.json")
			if st["status"] != "success" || st["koji_task_id"] != float64(id) || st["koji_build_id"] != float64(build.ID) {
				t.Errorf("compose-status.json = %v", st)
			}
			files, err := b.user.ListTaskOutput(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"x86_64-tar.manifest.json", "x86_64-tar.log.json", "koji-init.log.json", "koji-import.log.json"} {
				if !strings.Contains(strings.Join(files, " "), want) {
					t.Errorf("task output %v lacks %s", files, want)
				}
			}
		})
	}
}

// TestOSBuildImageComposeFails: a failed image fails the task with the
// compose's error, the reservation is refunded and nothing is tagged; the
// manifests and logs are attached all the same.
func TestOSBuildImageComposeFails(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote", true: "local"}[local], func(t *testing.T) {
			b := osbSetup(t, local)
			b.builder.Fail = map[string]bool{"x86_64": true}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); b.runHost(ctx, t) }()
			defer func() { cancel(); <-done }()

			id := b.submit(t, "Debian-Cloud", "12", "debian-12", "tar", "debian-12", []any{"x86_64"},
				map[string]any{"release": "7", "repo": []any{"http://deb.example.org/debian"}})
			_, err := b.waitTask(t, id)
			var f *koji.Fault
			if !errors.As(err, &f) || f.Code != koji.CodeBuild || !strings.Contains(f.String, "Compose failed") ||
				!strings.Contains(f.String, "x86_64 tar") || !strings.Contains(f.String, "mmdebstrap: exit status 1 (x86_64)") {
				t.Fatalf("task error = %v, want a BuildError with the compose's error", err)
			}
			build, err := b.user.GetBuild(ctx, "Debian-Cloud-12-7")
			if err != nil || build == nil || build.State != koji.BuildFailed {
				t.Fatalf("build %+v (%v), want the refunded (FAILED) reservation", build, err)
			}
			if tagged := b.hub.TaggedBuilds("debian-12-candidate"); len(tagged) != 0 {
				t.Errorf("tagged %v after a failed compose", tagged)
			}
			st := b.output(t, id, "compose-status.json")
			if st["status"] != "failure" {
				t.Errorf("compose-status.json = %v", st)
			}
			files, _ := b.user.ListTaskOutput(ctx, id)
			if !strings.Contains(strings.Join(files, " "), "x86_64-tar.log.json") {
				t.Errorf("logs not attached on failure: %v", files)
			}
		})
	}
}

// TestOSBuildImageChecks: the handler refuses, as the plugin does, targets
// that do not exist, arches outside the build tag and a tag without repo
// when no repo is given.
func TestOSBuildImageChecks(t *testing.T) {
	b := osbSetup(t, false)
	b.hub.AddTag("bare-build", "x86_64", "", nil)
	b.hub.AddTarget("bare", "bare-build", "debian-12-candidate")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.runHost(ctx, t) }()
	defer func() { cancel(); <-done }()
	tests := []struct {
		name   string
		target string
		arches []any
		want   string
	}{
		{"no target", "nope", []any{"x86_64"}, "No such build target: nope"},
		{"arch", "debian-12", []any{"x86_64", "s390x", "ppc64le"}, "Unsupported architecture(s): {'ppc64le', 's390x'}"},
		{"no repo", "bare", []any{"x86_64"}, "No repo for build tag bare-build"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := b.submit(t, "n", "1", "debian-12", "tar", tc.target, tc.arches, map[string]any{})
			_, err := b.waitTask(t, id)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("task error %v, want %q", err, tc.want)
			}
		})
	}
	if b.builder.Builds() != 0 {
		t.Errorf("%d builds ran for refused tasks", b.builder.Builds())
	}
}

// newLocalHTTP serves h on loopback for the rest of the test and returns
// its URL.
func newLocalHTTP(tb testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}
