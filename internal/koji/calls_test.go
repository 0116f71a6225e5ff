package koji_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// uploadForImport uploads files into dir.
func uploadForImport(t *testing.T, c *koji.Client, dir string, files map[string][]byte) map[string]*koji.UploadResult {
	t.Helper()
	out := map[string]*koji.UploadResult{}
	for name, data := range files {
		r, err := c.Upload(context.Background(), dir, name, bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = r
	}
	return out
}

func metadata(nvr koji.NVR, buildID int64, up map[string]*koji.UploadResult) map[string]any {
	var outputs []any
	for name, r := range up {
		o := map[string]any{"buildroot_id": 1, "filename": name, "filesize": r.Size, "checksum_type": "sha256", "checksum": r.SHA256, "arch": "x86_64"}
		if strings.HasSuffix(name, ".log") {
			o["type"] = "log"
		} else {
			o["type"] = "image"
			o["extra"] = map[string]any{"image": map[string]any{"arch": "x86_64"}}
		}
		outputs = append(outputs, o)
	}
	b := map[string]any{"name": nvr.Name, "version": nvr.Version, "release": nvr.Release, "source": "", "start_time": 1700000000, "end_time": 1700000100,
		"extra": map[string]any{"typeinfo": map[string]any{"image": map[string]any{}}}}
	if buildID != 0 {
		b["build_id"] = buildID
	}
	return map[string]any{
		"metadata_version": 0,
		"build":            b,
		"buildroots": []any{map[string]any{"id": 1, "host": map[string]any{"os": "debian-12", "arch": "x86_64"},
			"content_generator": map[string]any{"name": "kib", "version": "0.1"}, "container": map[string]any{"type": "none", "arch": "x86_64"},
			"tools": []any{}, "components": []any{}}},
		"output": outputs,
	}
}

func TestCGImport(t *testing.T) {
	b := setup(t, koji.Options{UploadChunkSize: 1000})
	ctx := context.Background()
	nvr := koji.NVR{Name: "debian-cloud", Version: "12", Release: "1"}
	res, err := b.client.CGInitBuild(ctx, "kib", nvr)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Token) != 64 {
		t.Errorf("token %q", res.Token)
	}
	if _, err := b.client.CGInitBuild(ctx, "kib", nvr); err == nil || !strings.Contains(err.Error(), "already reserved") {
		t.Errorf("second reservation: %v", err)
	}
	got, err := b.client.GetBuild(ctx, res.BuildID)
	if err != nil || got.State != koji.BuildBuilding {
		t.Fatalf("reserved build: %+v %v", got, err)
	}
	rel, err := b.client.GetNextRelease(ctx, "debian-cloud", "12")
	if err != nil || rel != "2" {
		t.Errorf("next release = %q, %v", rel, err)
	}
	dir := koji.UniqueUploadDir("kib")
	up := uploadForImport(t, b.client, dir, map[string][]byte{"disk.qcow2": randomBytes(5000, 1), "image-build.log": []byte("log\n")})
	build, err := b.client.CGImport(ctx, metadata(nvr, res.BuildID, up), dir, res.Token)
	if err != nil {
		t.Fatal(err)
	}
	if build.ID != res.BuildID || build.State != koji.BuildComplete {
		t.Errorf("imported build %+v", build)
	}
	arch, err := b.client.ListArchives(ctx, build.ID, "image")
	if err != nil || len(arch) != 1 || arch[0].Filename != "disk.qcow2" || arch[0].Arch != "x86_64" || arch[0].ChecksumType != 2 {
		t.Errorf("archives = %+v, %v", arch, err)
	}
	logs, err := b.client.GetBuildLogs(ctx, build.ID)
	if err != nil || len(logs) != 2 {
		t.Errorf("logs = %+v, %v", logs, err)
	}
	// Koji's layout: the image under images/, the upload dir left with a symlink.
	img := filepath.Join(b.hub.Dir, "packages", "debian-cloud", "12", "1", "images", "disk.qcow2")
	if st, err := os.Stat(img); err != nil || st.Size() != 5000 {
		t.Errorf("imported image: %v", err)
	}
	if st, err := os.Lstat(filepath.Join(b.hub.Dir, "work", dir, "disk.qcow2")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("upload dir should hold a symlink: %v", err)
	}
	if _, err := b.client.CGImport(ctx, metadata(nvr, res.BuildID, up), dir, res.Token); err == nil {
		t.Error("second import with the same token succeeded")
	}
}

func TestCGImportValidation(t *testing.T) {
	nvr := koji.NVR{Name: "img", Version: "1", Release: "1"}
	tests := []struct {
		name   string
		mutate func(m map[string]any, up map[string]*koji.UploadResult)
		want   string
		code   int
	}{
		{"size mismatch", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["output"].([]any)[0].(map[string]any)["filesize"] = 1
		}, "Corrupted upload", koji.CodeGeneric},
		{"checksum mismatch", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["output"].([]any)[0].(map[string]any)["checksum"] = strings.Repeat("0", 64)
		}, "File checksum mismatch", koji.CodeGeneric},
		{"sha1", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["output"].([]any)[0].(map[string]any)["checksum_type"] = "sha1"
		}, "Unsupported verify type: sha1", koji.CodeGeneric},
		{"image without arch", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["output"].([]any)[0].(map[string]any)["extra"] = map[string]any{"image": map[string]any{}}
		}, "'arch'", koji.CodeUnknown},
		{"no typeinfo", func(m map[string]any, _ map[string]*koji.UploadResult) {
			delete(m["output"].([]any)[0].(map[string]any), "extra")
		}, "No typeinfo for", koji.CodeGeneric},
		{"missing start_time", func(m map[string]any, _ map[string]*koji.UploadResult) {
			delete(m["build"].(map[string]any), "start_time")
		}, "'start_time'", koji.CodeUnknown},
		{"bad version", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["build"].(map[string]any)["version"] = "1-2"
		}, "Invalid version", koji.CodeGeneric},
		{"metadata version", func(m map[string]any, _ map[string]*koji.UploadResult) { m["metadata_version"] = 1 }, "metadata version", koji.CodeGeneric},
		{"unused buildroot", func(m map[string]any, _ map[string]*koji.UploadResult) {
			br := m["buildroots"].([]any)[0].(map[string]any)
			other := map[string]any{}
			for k, v := range br {
				other[k] = v
			}
			other["id"] = 2
			m["buildroots"] = append(m["buildroots"].([]any), other)
		}, "Buildroot id not used", koji.CodeGeneric},
		{"unknown component type", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["buildroots"].([]any)[0].(map[string]any)["components"] = []any{map[string]any{"type": "deb", "name": "bash"}}
		}, "No such component type: deb", koji.CodeGeneric},
		{"unknown CG", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["buildroots"].([]any)[0].(map[string]any)["content_generator"] = map[string]any{"name": "other", "version": "1"}
		}, "No such entry in table content_generator", koji.CodeGeneric},
		{"missing file", func(m map[string]any, _ map[string]*koji.UploadResult) {
			m["output"].([]any)[0].(map[string]any)["filename"] = "nothere.qcow2"
		}, "No such file", koji.CodeUnknown},
		{"draft", func(m map[string]any, _ map[string]*koji.UploadResult) { m["build"].(map[string]any)["draft"] = true }, "Draft build not supported", koji.CodeGeneric},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, koji.Options{Retry: koji.RetryPolicy{MaxRetries: 1, Interval: 1}})
			dir := koji.UniqueUploadDir("kib")
			up := uploadForImport(t, b.client, dir, map[string][]byte{"disk.raw.xz": []byte("xz data")})
			m := metadata(nvr, 0, up)
			tt.mutate(m, up)
			_, err := b.client.CGImport(context.Background(), m, dir, "")
			var f *koji.Fault
			if !errors.As(err, &f) || f.Code != tt.code || !strings.Contains(f.String, tt.want) {
				t.Fatalf("err = %v, want fault %d containing %q", err, tt.code, tt.want)
			}
		})
	}
}

func TestCGAccessAndRefund(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	b.hub.AddUser("mallory", "pw", "admin")
	m, _ := koji.New(b.hub.URL, koji.Options{Retry: fastRetry})
	if err := m.Login(ctx, "mallory", "pw"); err != nil {
		t.Fatal(err)
	}
	nvr := koji.NVR{Name: "img", Version: "1", Release: "1"}
	if _, err := m.CGInitBuild(ctx, "kib", nvr); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("admin without CG access: %v, want AuthError (no admin bypass)", err)
	}
	res, err := b.client.CGInitBuild(ctx, "kib", nvr)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.client.CGRefundBuild(ctx, "kib", res.BuildID, res.Token, koji.BuildComplete); err == nil {
		t.Error("refund to COMPLETE accepted")
	}
	if err := b.client.CGRefundBuild(ctx, "kib", res.BuildID, "bad", koji.BuildFailed); err == nil {
		t.Error("refund with a wrong token accepted")
	}
	if err := b.client.CGRefundBuild(ctx, "kib", res.BuildID, res.Token, koji.BuildFailed); err != nil {
		t.Fatal(err)
	}
	got, _ := b.client.GetBuild(ctx, res.BuildID)
	if got.State != koji.BuildFailed {
		t.Errorf("state after refund = %d", got.State)
	}
	// The refunded NVR can be reserved again and recycles the build id.
	res2, err := b.client.CGInitBuild(ctx, "kib", nvr)
	if err != nil || res2.BuildID != res.BuildID {
		t.Errorf("re-reservation: %+v, %v", res2, err)
	}
}

func TestCGImportRetriesCorruptedUpload(t *testing.T) {
	b := setup(t, koji.Options{})
	b.hub.Inject(kojitest.Injection{Method: "CGImport", Fault: &koji.Fault{Code: koji.CodeGeneric, String: "File size 1 for x (expected 2) doesn't match. Corrupted upload?"}})
	dir := koji.UniqueUploadDir("kib")
	up := uploadForImport(t, b.client, dir, map[string][]byte{"disk.qcow2": []byte("qcow")})
	if _, err := b.client.CGImport(context.Background(), metadata(koji.NVR{Name: "a", Version: "1", Release: "1"}, 0, up), dir, ""); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range b.hub.Calls() {
		if c == "CGImport" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("CGImport called %d times, want 2", n)
	}
}

func TestTagsTargetsRepos(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	b.hub.AddTag("base", "x86_64 aarch64", "", map[string]any{"mock.new_chroot": 0})
	b.hub.AddTag("f-build", "", "base", map[string]any{"x": "y"})
	b.hub.AddTag("f-dest", "", "", nil)
	b.hub.AddTarget("f", "f-build", "f-dest")
	repoID := b.hub.AddRepo("f-build")
	tgt, err := b.client.GetBuildTarget(ctx, "f")
	if err != nil || tgt.BuildTagName != "f-build" || tgt.DestTagName != "f-dest" {
		t.Fatalf("target %+v %v", tgt, err)
	}
	cfg, err := b.client.GetBuildConfig(ctx, tgt.BuildTag)
	if err != nil || strings.Join(cfg.ArchList(), ",") != "x86_64,aarch64" || cfg.Extra["x"] != "y" || cfg.Extra["mock.new_chroot"] == nil {
		t.Errorf("build config %+v %v", cfg, err)
	}
	tag, err := b.client.GetTag(ctx, "f-build")
	if err != nil || tag.Arches != nil {
		t.Errorf("tag %+v %v (arches are not inherited by getTag)", tag, err)
	}
	repo, err := b.client.GetRepo(ctx, "f-build")
	if err != nil || repo.ID != int64(repoID) {
		t.Errorf("repo %+v %v", repo, err)
	}
	if r, err := b.client.GetRepo(ctx, "f-dest"); err != nil || r != nil {
		t.Errorf("repo of a tag without one: %+v %v", r, err)
	}
	if _, err := b.client.GetBuildTarget(ctx, "nope"); !errors.Is(err, koji.ErrGeneric) {
		t.Errorf("missing target: %v", err)
	}
}

// TestBuildHost runs the task-based image build of §7 of the reference:
// a parent task, an arch subtask uploading an image, completeImageBuild and
// tagging.
func TestBuildHost(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	ctx := context.Background()
	hub.AddUser("alice", "pw")
	hub.AddHost("builder1", "hostpw", []string{"x86_64"}, "default", "image")
	hub.AddTag("dest", "x86_64", "", nil)
	parentID := int64(hub.MakeTask("alice", "imageBuilderBuild", []any{"target", []any{"x86_64"}, []any{"qcow2"}, "img", "1"}, "image", "noarch"))
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c.Login(ctx, "builder1", "hostpw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTasks(ctx); err == nil || !strings.Contains(err.Error(), "exclusive session") {
		t.Fatalf("host call on a shared session: %v", err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateHost(ctx, 0, true, map[string]any{"methods": []string{"imageBuilderBuild"}, "maxjobs": 1}); err != nil {
		t.Fatal(err)
	}
	tasks, err := c.GetTasks(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].ID != parentID || tasks[0].State != koji.TaskAssigned {
		t.Fatalf("tasks %+v %v", tasks, err)
	}
	opened, err := c.OpenTask(ctx, parentID)
	if err != nil || opened == nil || !strings.Contains(opened.Request.(string), "<methodName>imageBuilderBuild</methodName>") {
		t.Fatalf("openTask %+v %v", opened, err)
	}
	info, err := c.GetTaskInfo(ctx, parentID, true)
	if err != nil || info.State != koji.TaskOpen || len(info.Request.([]any)) != 5 {
		t.Fatalf("task info %+v %v", info, err)
	}
	if err := c.SetTaskWeight(ctx, parentID, 0.5); err != nil {
		t.Fatal(err)
	}
	build, err := c.InitImageBuild(ctx, parentID, koji.NVR{Name: "img", Version: "1"})
	if err != nil || build.Release != "1" {
		t.Fatalf("initImageBuild %+v %v", build, err)
	}
	child, err := c.Subtask(ctx, "imageBuilderBuildArch", []any{"x86_64"}, parentID, koji.SubtaskOpts{Label: "x86_64", Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Subtask(ctx, "imageBuilderBuildArch", []any{"x86_64"}, parentID, koji.SubtaskOpts{Label: "x86_64", Arch: "x86_64"})
	if err != nil || again != child {
		t.Errorf("subtask with the same label: %d %v, want %d", again, err, child)
	}
	if err := c.TaskSetWait(ctx, parentID, []int64{child}); err != nil {
		t.Fatal(err)
	}
	if fin, unfin, err := c.TaskWait(ctx, parentID); err != nil || len(fin) != 0 || len(unfin) != 1 {
		t.Errorf("taskWait %v %v %v", fin, unfin, err)
	}
	// The child runs on the same host.
	if _, err := c.OpenTask(ctx, child); err != nil {
		t.Fatal(err)
	}
	taskDir := "tasks/" + itoa(child%10000) + "/" + itoa(child)
	img := randomBytes(3000, 9)
	if _, err := c.Upload(ctx, taskDir, "img-1-1.x86_64.qcow2", bytes.NewReader(img), 3000, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upload(ctx, taskDir, "build.log", strings.NewReader("ok\n"), 3, nil); err != nil {
		t.Fatal(err)
	}
	out, err := c.ListTaskOutput(ctx, child)
	if err != nil || len(out) != 2 {
		t.Errorf("task output %v %v", out, err)
	}
	var dl bytes.Buffer
	if n, err := c.DownloadTaskOutput(ctx, child, "img-1-1.x86_64.qcow2", &dl); err != nil || n != 3000 || !bytes.Equal(dl.Bytes(), img) {
		t.Errorf("download: %d %v", n, err)
	}
	result := koji.ImageBuildResult{TaskID: child, Name: "img", Version: "1", Release: "1", Arch: "x86_64", Files: []string{"img-1-1.x86_64.qcow2"}}
	if err := c.CloseTask(ctx, child, map[string]any{"task_id": child, "arch": "x86_64", "files": result.Files}); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseTask(ctx, child, "again"); !errors.Is(err, koji.ErrActionNotAllowed) {
		t.Errorf("closing a closed task: %v, want ActionNotAllowed", err)
	}
	if fin, _, err := c.TaskWait(ctx, parentID); err != nil || len(fin) != 1 {
		t.Errorf("taskWait after close %v %v", fin, err)
	}
	results, err := c.TaskWaitResults(ctx, parentID, []int64{child}, nil)
	if err != nil || len(results) != 1 || results[0].ID != child {
		t.Fatalf("taskWaitResults %+v %v", results, err)
	}
	if err := c.CompleteImageBuild(ctx, parentID, build.ID, map[int64]koji.ImageBuildResult{child: result}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	archives, err := c.ListArchives(ctx, build.ID, "image")
	if err != nil || len(archives) != 1 || archives[0].Checksum != hex.EncodeToString(sum[:]) {
		t.Errorf("archives %+v %v", archives, err)
	}
	if _, err := os.Stat(filepath.Join(hub.Dir, "packages", "img", "1", "1", "data", "logs", "image", "x86_64", "build.log")); err != nil {
		t.Errorf("log not moved: %v", err)
	}
	if err := c.HostTagBuild(ctx, parentID, "dest", build.ID); err != nil {
		t.Fatal(err)
	}
	if got := hub.TaggedBuilds("dest"); len(got) != 1 {
		t.Errorf("tagged %v", got)
	}
	if err := c.CloseTask(ctx, parentID, map[string]any{"koji": map[string]any{"build": build.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := c.FailBuild(ctx, parentID, build.ID); !errors.Is(err, koji.ErrActionNotAllowed) {
		t.Errorf("failBuild after the task closed: %v", err)
	}
	r, err := c.GetTaskResult(ctx, parentID)
	if err != nil || r.(map[string]any)["koji"] == nil {
		t.Errorf("task result %v %v", r, err)
	}
}

func TestFailAndRefuseTask(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	ctx := context.Background()
	hub.AddUser("alice", "pw")
	hub.AddHost("builder1", "hostpw", []string{"x86_64"}, "image")
	id1 := int64(hub.MakeTask("alice", "osbuildImage", []any{"n"}, "image", "noarch"))
	id2 := int64(hub.MakeTask("alice", "unknownMethod", nil, "image", "noarch"))
	id3 := int64(hub.MakeTask("alice", "buildArch", nil, "default", "noarch"))
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c.Login(ctx, "builder1", "hostpw"); err != nil {
		t.Fatal(err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateHost(ctx, 0, true, nil); err != nil {
		t.Fatal(err)
	}
	tasks, err := c.GetTasks(ctx)
	if err != nil || len(tasks) != 2 {
		t.Fatalf("tasks %+v %v (capacity 2, task %d is in a channel the host is not in)", tasks, err, id3)
	}
	if err := c.RefuseTask(ctx, id2, false, "no handler for method"); err != nil {
		t.Fatal(err)
	}
	if hub.TaskState(int(id2)) != koji.TaskFree {
		t.Errorf("refused task state %d", hub.TaskState(int(id2)))
	}
	if _, err := c.OpenTask(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if err := c.FailTask(ctx, id1, &koji.Fault{Code: koji.CodeBuild, String: "compose failed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTaskResult(ctx, id1); !errors.Is(err, koji.ErrBuild) {
		t.Errorf("result of a failed task: %v, want BuildError", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestImageBuildFailures covers the failure paths of a task-based image
// build: unsupported files, failBuild while the task is open, scratch
// results, and cancelling a task with its children.
func TestImageBuildFailures(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	ctx := context.Background()
	hub.AddUser("alice", "pw")
	hub.AddHost("builder1", "hostpw", []string{"x86_64"}, "image")
	parent := int64(hub.MakeTask("alice", "imageBuilderBuild", []any{"t"}, "image", "noarch"))
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c.Login(ctx, "builder1", "hostpw"); err != nil {
		t.Fatal(err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenTask(ctx, parent); err != nil {
		t.Fatal(err)
	}
	build, err := c.InitImageBuild(ctx, parent, koji.NVR{Name: "img", Version: "2", Release: "7"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := c.Subtask(ctx, "imageBuilderBuildArch", []any{"x86_64"}, parent, koji.SubtaskOpts{Label: "x86_64", Kwargs: map[string]any{"scratch": true}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.GetTaskInfo(ctx, child, true)
	if err != nil || info.Arch != "noarch" || *info.Parent != parent {
		t.Fatalf("child %+v %v", info, err)
	}
	if req := info.Request.([]any); len(req) != 2 || req[1].(map[string]any)["__starstar"] != true {
		t.Errorf("child request %v: kwargs must be the trailing __starstar struct", req)
	}
	if _, err := c.OpenTask(ctx, child); err != nil {
		t.Fatal(err)
	}
	dir := "tasks/" + itoa(child%10000) + "/" + itoa(child)
	for name, data := range map[string]string{"img.ami": "ami", "img.qcow2": "qcow", "build.log": "log"} {
		if _, err := c.Upload(ctx, dir, name, strings.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	bad := map[int64]koji.ImageBuildResult{child: {TaskID: child, Arch: "x86_64", Files: []string{"img.ami"}}}
	if err := c.CompleteImageBuild(ctx, parent, build.ID, bad); !errors.Is(err, koji.ErrBuild) || !strings.Contains(err.Error(), "Unsupported file type") {
		t.Errorf("completeImageBuild with .ami: %v, want BuildError", err)
	}
	scratch := map[int64]koji.ImageBuildResult{child: {TaskID: child, Arch: "x86_64", Files: []string{"img.qcow2"}, Logs: []string{"build.log"}}}
	if err := c.MoveImageBuildToScratch(ctx, parent, scratch); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(hub.Dir, "scratch", "alice", "task_"+itoa(child), "img.qcow2")); err != nil {
		t.Errorf("scratch result: %v", err)
	}
	if err := c.FailBuild(ctx, parent, build.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.FailBuild(ctx, parent, build.ID); err == nil {
		t.Error("failing a failed build succeeded")
	}
	if got, _ := c.GetBuild(ctx, build.ID); got.State != koji.BuildFailed {
		t.Errorf("build state %d, want FAILED", got.State)
	}
	// The task owner cancels the parent; the child goes with it.
	alice, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := alice.Login(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Call(ctx, "cancelTask", parent); err != nil {
		t.Fatal(err)
	}
	if hub.TaskState(int(parent)) != koji.TaskCanceled || hub.TaskState(int(child)) != koji.TaskCanceled {
		t.Errorf("states after cancel: %d %d", hub.TaskState(int(parent)), hub.TaskState(int(child)))
	}
	if _, err := alice.GetTaskResult(ctx, parent); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("result of a canceled task: %v", err)
	}
}
