package kojid

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// pungiIBFixture is one Pungi imagebuilder configuration block and the
// imageBuilderBuild call Pungi's phases/imagebuilder.py makes for it.
type pungiIBFixture struct {
	Description string         `json:"description"`
	PungiConfig map[string]any `json:"pungi_config"`
	Variant     string         `json:"variant"`
	Calls       []struct {
		Method string         `json:"method"`
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	} `json:"calls"`
	Expect struct {
		Task    string `json:"task"`
		NVR     string `json:"nvr"`
		Scratch bool   `json:"scratch"`
		// Images are the "arch type format" triples Pungi puts in the
		// compose's image manifest.
		Images []string `json:"images"`
		// Repos are the repositories the arch task builds from.
		Repos []string `json:"repos"`
	} `json:"expect"`
}

// xmlrpcValue turns whole JSON numbers into XML-RPC integers.
func xmlrpcValue(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	case []any:
		for i := range x {
			x[i] = xmlrpcValue(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = xmlrpcValue(x[k])
		}
	}
	return v
}

// pungiIBSuffixes is the order in which Pungi's imagebuilder phase maps a
// result file name to an image type and format: its image-builder
// suffixes first, then image_build's EXTENSIONS in their dict order.
var pungiIBSuffixes = []struct{ typ, suffix, format string }{
	{"vagrant-libvirt", "vagrant.libvirt.box", "vagrant-libvirt.box"},
	{"vagrant-virtualbox", "vagrant.virtualbox.box", "vagrant-virtualbox.box"},
	{"container", "oci.tar.xz", "tar.xz"},
	{"wsl2", "wsl", "wsl"},
	{"boot", ".iso", "iso"},
	{"docker", "tar.gz", ""}, {"docker", "tar.xz", ""},
	{"liveimg-squashfs", "liveimg.squashfs", ""},
	{"qcow", "qcow", ""}, {"qcow2", "qcow2", ""}, {"raw", "raw", ""}, {"raw-xz", "raw.xz", ""},
	{"rhevm-ova", "rhevm.ova", ""}, {"tar-gz", "tar.gz", ""},
	{"vagrant-hyperv", "vagrant-hyperv.box", ""}, {"vagrant-libvirt", "vagrant-libvirt.box", ""},
	{"vagrant-virtualbox", "vagrant-virtualbox.box", ""}, {"vagrant-vmware-fusion", "vagrant-vmware-fusion.box", ""},
	{"vdi", "vdi", ""}, {"vmdk", "vmdk", ""}, {"vpc", "vhd", ""}, {"vsphere-ova", "vsphere.ova", ""},
}

// pungiTypeAndFormat is Pungi's _find_type_and_format: ("", "") means the
// file is not an image and Pungi skips it.
func pungiTypeAndFormat(path string) (string, string) {
	for _, s := range pungiIBSuffixes {
		if strings.HasSuffix(path, s.suffix) {
			if s.format == "" {
				return s.typ, s.suffix
			}
			return s.typ, s.format
		}
	}
	return "", ""
}

// exportNameBuilder is fastBuilder with the export file name kib's engine
// gives each type, so the Koji file names end as real ones do.
type exportNameBuilder struct {
	fastBuilder
	mu  sync.Mutex
	req []BuildRequest
}

func (b *exportNameBuilder) Build(ctx context.Context, req BuildRequest) ([]BuiltImage, error) {
	b.mu.Lock()
	b.req = append(b.req, req)
	b.mu.Unlock()
	imgs, err := b.fastBuilder.Build(ctx, req)
	if err != nil {
		return nil, err
	}
	names := map[string]string{"qcow2": "disk.qcow2", "raw": "disk.raw", "vmdk": "disk.vmdk", "iso": "install.iso"}
	for i, im := range imgs {
		name, ok := names[im.Info.ImageType]
		if !ok {
			continue
		}
		p := filepath.Join(filepath.Dir(im.Path), name)
		for _, pair := range [][2]string{{im.Path, p}, {im.Manifest, p + ".manifest.json"}, {im.SBOMs[0], p + ".image-os.spdx.json"}} {
			if err := os.Rename(pair[0], pair[1]); err != nil {
				return nil, err
			}
		}
		imgs[i].Path, imgs[i].Manifest, imgs[i].SBOMs = p, p+".manifest.json", []string{p + ".image-os.spdx.json"}
		imgs[i].Info.ExportFilename = name
	}
	return imgs, nil
}

// TestPungiImageBuilderReplay replays the imageBuilderBuild call of Pungi's
// imagebuilder phase against kojitest with a kib kojid host, waits as
// `koji watch-task` does, then reads the images back as Pungi's
// KojiWrapper.get_image_paths does: getTaskChildren(request=True), for each
// closed imageBuilderBuildArch child its request's opts.scratch and
// getTaskResult, getImageBuild(N-V-R) for non-scratch builds, the files
// under the build's images dir (or the child's work dir for scratch), each
// typed by file name. Every file Pungi would link must exist there.
func TestPungiImageBuilderReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/pungi/imagebuilder*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var fx pungiIBFixture
			if err := json.Unmarshal(data, &fx); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			e := newEnv(t)
			b := &exportNameBuilder{}
			e.startHost(t, "builder1", []string{"x86_64", "aarch64"}, b)
			for _, call := range fx.Calls {
				args := xmlrpcValue(call.Args).([]any)
				if call.Kwargs != nil {
					args = append(args, koji.Kwargs(xmlrpcValue(call.Kwargs).(map[string]any)))
				}
				var id int64
				if err := e.user.CallInto(ctx, &id, call.Method, args...); err != nil {
					t.Fatalf("%s: %v", call.Method, err)
				}
				tasks, err := e.watch(t, id)
				if err != nil {
					t.Fatalf("watch-task %d: %v (Pungi raises \"imageBuilderBuild task failed\")", id, err)
				}
				if st := tasks[id].State; st != koji.TaskClosed || fx.Expect.Task != "closed" {
					t.Fatalf("task %d state %d, fixture expects %s", id, st, fx.Expect.Task)
				}
				images := pungiImagePaths(t, e, id)
				var got []string
				for arch, paths := range images {
					for _, p := range paths {
						typ, format := pungiTypeAndFormat(p)
						if format == "" {
							continue
						}
						if _, err := os.Stat(p); err != nil {
							t.Errorf("Pungi links %s: %v", p, err)
						}
						got = append(got, fmt.Sprintf("%s %s %s", arch, typ, format))
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, fx.Expect.Images) {
					t.Errorf("Pungi's image manifest gets %q, want %q", got, fx.Expect.Images)
				}
				checkPungiBuild(t, e, id, &fx)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, r := range b.req {
				if !slices.Equal(r.Repos, fx.Expect.Repos) {
					t.Errorf("%s build repos %q, want %q", r.Arch, r.Repos, fx.Expect.Repos)
				}
				if r.Seed == nil || *r.Seed != 42 {
					t.Errorf("seed %v, want opts.seed 42", r.Seed)
				}
				if c, _ := r.Blueprint["customizations"].(map[string]any); c["hostname"] != "server" {
					t.Errorf("blueprint %v, want opts.blueprint passed through", r.Blueprint)
				}
			}
			if len(b.req) == 0 {
				t.Error("the builder was not called")
			}
		})
	}
}

// pungiImagePaths follows KojiWrapper.get_image_paths: arch → paths of the
// files of each closed imageBuilderBuildArch child.
func pungiImagePaths(t *testing.T, e *testEnv, id int64) map[string][]string {
	t.Helper()
	ctx := context.Background()
	raw, err := e.user.Call(ctx, "getTaskChildren", id, koji.Kwargs{"request": true})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range raw.([]any) {
		child := c.(map[string]any)
		if child["method"] != "imageBuilderBuildArch" || child["state"] != int64(koji.TaskClosed) {
			continue
		}
		req := child["request"].([]any)
		opts, ok := req[len(req)-1].(map[string]any)
		if !ok {
			t.Fatalf("child %v: the request's last argument %v is not the opts struct Pungi calls .get on", child["id"], req[len(req)-1])
		}
		scratch, _ := opts["scratch"].(bool)
		cid := child["id"].(int64)
		res, err := e.user.GetTaskResult(ctx, cid)
		if err != nil {
			t.Fatal(err)
		}
		r := res.(map[string]any)
		var topdir string
		if scratch {
			topdir = filepath.Join(e.hub.Dir, "work", "tasks", fmt.Sprint(cid%10000), fmt.Sprint(cid))
		} else {
			nvr := fmt.Sprintf("%s-%s-%s", r["name"], r["version"], r["release"])
			ib, err := e.user.Call(ctx, "getImageBuild", nvr)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ib.(map[string]any); !ok {
				t.Fatalf("getImageBuild(%q) = %v: Pungi assigns into it", nvr, ib)
			}
			topdir = filepath.Join(e.hub.Dir, "packages", r["name"].(string), r["version"].(string), r["release"].(string), "images")
		}
		arch := r["arch"].(string)
		for _, f := range r["files"].([]any) {
			out[arch] = append(out[arch], filepath.Join(topdir, f.(string)))
		}
	}
	return out
}

// checkPungiBuild: a non-scratch build is complete, has the images as
// archives with their arch and is tagged into the target's destination
// tag; a scratch build makes no build and tags nothing.
func checkPungiBuild(t *testing.T, e *testEnv, id int64, fx *pungiIBFixture) {
	t.Helper()
	ctx := context.Background()
	if fx.Expect.Scratch {
		if b, err := e.user.GetBuild(ctx, fx.Expect.NVR); err == nil && b != nil {
			t.Errorf("scratch build made build %+v", b)
		}
		if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 0 {
			t.Errorf("scratch build tagged: %v", got)
		}
		return
	}
	bld, err := e.user.GetBuild(ctx, fx.Expect.NVR)
	if err != nil || bld == nil || bld.State != koji.BuildComplete || bld.TaskID == nil || *bld.TaskID != id {
		t.Fatalf("build %s: %+v (%v), want complete from task %d", fx.Expect.NVR, bld, err, id)
	}
	arcs, err := e.user.ListArchives(ctx, bld.ID, "image")
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, a := range arcs {
		if typ, format := pungiTypeAndFormat(a.Filename); format != "" {
			have = append(have, fmt.Sprintf("%s %s %s", a.Arch, typ, format))
		}
	}
	slices.Sort(have)
	if !slices.Equal(have, fx.Expect.Images) {
		t.Errorf("image archives %q, want %q", have, fx.Expect.Images)
	}
	if got := e.hub.TaggedBuilds("debian-12-images"); len(got) != 1 || int64(got[0]) != bld.ID {
		t.Errorf("tagged into debian-12-images: %v, want build %d", got, bld.ID)
	}
}
