package kojid_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// pungiFixture is one Pungi configuration block and the hub calls Pungi's
// phase makes for it, written from reading Pungi's phases/osbuild.py.
type pungiFixture struct {
	Description string         `json:"description"`
	PungiConfig map[string]any `json:"pungi_config"`
	Variant     string         `json:"variant"`
	FailArches  []string       `json:"fail_arches"`
	Calls       []struct {
		Method string         `json:"method"`
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	} `json:"calls"`
	Expect struct {
		Task         string   `json:"task"`
		NVR          string   `json:"nvr"`
		ArchiveTypes []string `json:"archive_types"`
		Error        string   `json:"error"`
		Failable     bool     `json:"failable"`
	} `json:"expect"`
}

// pungiImageTypes are the Koji archive types Pungi's osbuild phase links
// into the compose (image_build.EXTENSIONS plus iso and vhd-compressed);
// other archives of the build are skipped.
var pungiImageTypes = []string{"docker", "liveimg-squashfs", "qcow", "qcow2", "raw", "raw-xz", "rhevm-ova", "tar-gz",
	"vagrant-hyperv", "vagrant-libvirt", "vagrant-virtualbox", "vagrant-vmware-fusion", "vdi", "vmdk", "vpc", "vsphere-ova",
	"iso", "vhd-compressed"}

// fromJSON turns JSON numbers into XML-RPC integers where they are whole.
func fromJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	case []any:
		for i := range x {
			x[i] = fromJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSON(x[k])
		}
	}
	return v
}

// TestPungiOSBuildReplay replays the osbuildImage calls of Pungi's osbuild
// phase, then reads the result back as Pungi does (getTaskResult →
// koji.build, getBuild, listArchives(buildID=...), archive type and
// extra.image.arch), in both modes.
func TestPungiOSBuildReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/pungi/osbuild-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, local := range []bool{false, true} {
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".json")
			t.Run(map[bool]string{false: "remote/", true: "local/"}[local]+name, func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var fx pungiFixture
				if err := json.Unmarshal(data, &fx); err != nil {
					t.Fatal(err)
				}
				b := osbSetup(t, local)
				b.builder.Fail = map[string]bool{}
				for _, a := range fx.FailArches {
					b.builder.Fail[a] = true
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); b.runHost(ctx, t) }()
				defer func() { cancel(); <-done }()

				for _, call := range fx.Calls {
					args := fromJSON(call.Args).([]any)
					if call.Kwargs != nil {
						args = append(args, koji.Kwargs(fromJSON(call.Kwargs).(map[string]any)))
					}
					var id int64
					if err := b.user.CallInto(ctx, &id, call.Method, args...); err != nil {
						t.Fatalf("%s: %v", call.Method, err)
					}
					res, err := b.waitTask(t, id)
					if fx.Expect.Task == "failed" {
						var f *koji.Fault
						if !errors.As(err, &f) || !strings.Contains(f.String, fx.Expect.Error) {
							t.Fatalf("task %d: %v, want a failure with %q", id, err, fx.Expect.Error)
						}
						if fx.Expect.NVR != "" {
							build, err := b.user.GetBuild(ctx, fx.Expect.NVR)
							if err != nil || build == nil || build.State != koji.BuildFailed {
								t.Errorf("build %s: %+v (%v), want the refunded reservation", fx.Expect.NVR, build, err)
							}
						}
						continue
					}
					if err != nil {
						t.Fatalf("task %d failed: %v", id, err)
					}
					buildID, ok := res.(map[string]any)["koji"].(map[string]any)["build"].(int64)
					if !ok {
						t.Fatalf("result %v: no koji.build", res)
					}
					build, err := b.user.GetBuild(ctx, buildID)
					if err != nil || build == nil || build.NVR != fx.Expect.NVR || build.State != koji.BuildComplete {
						t.Fatalf("build %d = %+v (%v), want %s complete", buildID, build, err, fx.Expect.NVR)
					}
					raw, err := b.user.Call(ctx, "listArchives", koji.Kwargs{"buildID": buildID})
					if err != nil {
						t.Fatal(err)
					}
					var linked []string
					for _, a := range raw.([]any) {
						am := a.(map[string]any)
						typ, _ := am["type_name"].(string)
						if !slices.Contains(pungiImageTypes, typ) {
							continue
						}
						extra, _ := am["extra"].(map[string]any)
						img, _ := extra["image"].(map[string]any)
						if arch, _ := img["arch"].(string); arch == "" {
							t.Errorf("archive %v: no extra.image.arch (Pungi raises \"Image doesn't have any architecture!\")", am["filename"])
						}
						linked = append(linked, typ)
					}
					if !slices.Equal(linked, fx.Expect.ArchiveTypes) {
						t.Errorf("Pungi would link archives of types %v, want %v", linked, fx.Expect.ArchiveTypes)
					}
				}
			})
		}
	}
}
