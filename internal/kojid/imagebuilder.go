package kojid

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/kib-project/kib/internal/koji"
)

// DefaultTopDir is Koji's default topdir, used in result strings.
const DefaultTopDir = "/mnt/koji"

// ImageBuilderBuild handles imageBuilderBuild(target, arches, types, name,
// version, opts) as koji-image-builder's builder plugin does: it checks the
// target and arches, picks the release, creates the image build, runs one
// imageBuilderBuildArch subtask per arch, imports their results (or moves
// them to scratch), tags the build with a tagBuild subtask and returns
// "image build results in: <dir>".
type ImageBuilderBuild struct {
	// TopDir is the hub's topdir for the result string; empty means
	// /mnt/koji.
	TopDir string
}

var _ Handler = ImageBuilderBuild{}

// Weight is the upstream plugin's _taskWeight.
func (ImageBuilderBuild) Weight() float64 { return 0.2 }

// BuildOpts are the opts of an imageBuilderBuild task, as the hub plugin's
// schema allows them.
type BuildOpts struct {
	Scratch        bool
	Repos          []string
	Release        string
	Distro         string
	SkipTag        bool
	Blueprint      map[string]any
	Seed           *int64
	Preview        *bool
	FailableArches []string
	raw            map[string]any
}

func paramErr(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeParameter, String: fmt.Sprintf(format, a...)}
}

// ParseBuildOpts reads opts; unknown keys and wrong types are a
// ParameterError naming the key, and ostree and bootc options are refused
// because kib does not build OSTree or bootc images yet.
func ParseBuildOpts(v any) (*BuildOpts, error) {
	o := &BuildOpts{raw: map[string]any{}}
	if v == nil {
		return o, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, paramErr("opts: must be a struct, not %T", v)
	}
	o.raw = m
	strList := func(k string) ([]string, error) {
		l, ok := m[k].([]any)
		if !ok {
			return nil, paramErr("opts.%s: must be a list of strings", k)
		}
		out := make([]string, len(l))
		for i, x := range l {
			s, ok := x.(string)
			if !ok {
				return nil, paramErr("opts.%s[%d]: must be a string", k, i)
			}
			out[i] = s
		}
		return out, nil
	}
	var err error
	for _, k := range slices.Sorted(mapsKeys(m)) {
		val := m[k]
		bad := func(typ string) error { return paramErr("opts.%s: must be a %s, not %T", k, typ, val) }
		switch k {
		case "scratch", "skip_tag", "preview":
			b, ok := val.(bool)
			if !ok {
				return nil, bad("boolean")
			}
			switch k {
			case "scratch":
				o.Scratch = b
			case "skip_tag":
				o.SkipTag = b
			default:
				o.Preview = &b
			}
		case "repos":
			if o.Repos, err = strList(k); err != nil {
				return nil, err
			}
		case "failable_arches":
			if o.FailableArches, err = strList(k); err != nil {
				return nil, err
			}
		case "release", "distro":
			s, ok := val.(string)
			if !ok {
				return nil, bad("string")
			}
			if k == "release" {
				o.Release = s
			} else {
				o.Distro = s
			}
		case "blueprint":
			bp, ok := val.(map[string]any)
			if !ok {
				return nil, bad("struct")
			}
			o.Blueprint = bp
		case "seed":
			n, ok := val.(int64)
			if !ok {
				return nil, bad("integer")
			}
			o.Seed = &n
		case "ostree", "bootc":
			return nil, &koji.Fault{Code: koji.CodeBuild, String: fmt.Sprintf("opts.%s: kib builds Debian images and does not build %s images yet", k, map[string]string{"ostree": "OSTree", "bootc": "bootc"}[k])}
		default:
			return nil, paramErr("opts: unknown option %q", k)
		}
	}
	return o, nil
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func strArg(v any, name string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", paramErr("%s: must be a string, not %T", name, v)
	}
	return s, nil
}

func strListArg(v any, name string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, paramErr("%s: must be a list, not %T", name, v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, paramErr("%s[%d]: must be a string", name, i)
		}
		out[i] = s
	}
	return out, nil
}

func buildErr(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeBuild, String: fmt.Sprintf(format, a...)}
}

// tagArches splits a tag's arches field as arches_for_config does.
func tagArches(t *koji.Tag) []string {
	if t.Arches == nil {
		return nil
	}
	return strings.Fields(*t.Arches)
}

// BuildArgs are the arguments of an imageBuilderBuild task.
type BuildArgs struct {
	Target        string
	Arches, Types []string
	Name, Version string
	Opts          *BuildOpts
}

// ParseBuildArgs reads imageBuilderBuild's arguments (target, arches,
// types, name, version, opts=None); a bad one is a ParameterError naming it.
func ParseBuildArgs(args []any, kw map[string]any) (*BuildArgs, error) {
	if len(args) < 5 {
		return nil, paramErr("imageBuilderBuild takes 5 or 6 arguments, %d given", len(args))
	}
	var a BuildArgs
	var err error
	if a.Target, err = strArg(args[0], "target"); err != nil {
		return nil, err
	}
	if a.Arches, err = strListArg(args[1], "arches"); err != nil {
		return nil, err
	}
	if a.Types, err = strListArg(args[2], "types"); err != nil {
		return nil, err
	}
	if len(a.Types) == 0 {
		return nil, paramErr("types: at least one image type is required")
	}
	if a.Name, err = strArg(args[3], "name"); err != nil {
		return nil, err
	}
	if a.Version, err = strArg(args[4], "version"); err != nil {
		return nil, err
	}
	var o any
	if len(args) > 5 {
		o = args[5]
	} else {
		o = kw["opts"]
	}
	if a.Opts, err = ParseBuildOpts(o); err != nil {
		return nil, err
	}
	return &a, nil
}

// Handle runs the task.
func (h ImageBuilderBuild) Handle(ctx context.Context, t *Task) (any, error) {
	a, err := ParseBuildArgs(t.Params, t.Kwargs)
	if err != nil {
		return nil, err
	}
	target, arches, types, name, version, opts := a.Target, a.Arches, a.Types, a.Name, a.Version, a.Opts

	hub := t.Hub
	tinfo, err := hub.GetBuildTarget(ctx, target)
	if err != nil {
		return nil, err
	}
	bcfg, err := hub.GetBuildConfig(ctx, tinfo.BuildTag)
	if err != nil {
		return nil, err
	}
	tagArchList := tagArches(bcfg)
	if len(tagArchList) == 0 {
		return nil, buildErr("no arches")
	}
	if len(arches) == 0 {
		arches = tagArchList
	} else {
		var diff []string
		for _, a := range arches {
			if !slices.Contains(tagArchList, a) {
				diff = append(diff, "'"+a+"'")
			}
		}
		if len(diff) > 0 {
			sort.Strings(diff)
			return nil, buildErr("Unsupported architecture(s): {%s}", strings.Join(diff, ", "))
		}
	}
	repo, err := hub.GetRepo(ctx, tinfo.BuildTag)
	if err != nil {
		return nil, err
	}
	release := opts.Release
	if release == "" {
		if release, err = hub.GetNextRelease(ctx, name, version); err != nil {
			return nil, err
		}
	}
	// Raw values for the subtask arguments, as the hub returned them.
	var rawTarget, rawConfig, rawRepo any
	if rawTarget, err = hub.Call(ctx, "getBuildTarget", target, koji.Kwargs{"strict": true}); err != nil {
		return nil, err
	}
	if rawConfig, err = hub.Call(ctx, "getBuildConfig", tinfo.BuildTag); err != nil {
		return nil, err
	}
	if repo != nil {
		if rawRepo, err = hub.Call(ctx, "getRepo", tinfo.BuildTag); err != nil {
			return nil, err
		}
	}

	var build *koji.Build
	if !opts.Scratch {
		build, err = h.imageBuild(ctx, t, name, version, release)
		if err != nil {
			return nil, err
		}
		release = build.Release
	}
	var subtasks []int64
	if build == nil || build.State == koji.BuildBuilding {
		if subtasks, err = h.buildArches(ctx, t, name, version, release, arches, types, rawTarget, rawConfig, rawRepo, opts, build); err != nil {
			if build != nil && ctx.Err() == nil {
				if ferr := hub.FailBuild(ctx, t.Info.ID, build.ID); ferr != nil {
					t.Log.Warn("host.failBuild", "build", build.ID, "err", ferr)
				}
			}
			return nil, err
		}
	} else {
		t.Log.Info("build already complete (task restarted)", "build", build.ID)
	}
	if !opts.Scratch && !opts.SkipTag {
		tagID, err := hub.Subtask(ctx, "tagBuild", []any{tinfo.DestTag, build.ID, false, koji.Nil, true}, t.Info.ID,
			koji.SubtaskOpts{Label: "tag", Arch: "noarch"})
		if err != nil {
			return nil, fmt.Errorf("creating the tagBuild subtask: %w", err)
		}
		t.Log.Info("tagging", "subtask", tagID, "tag", tinfo.DestTagName)
		if _, err := t.Wait(ctx, []int64{tagID}, WaitOptions{}); err != nil {
			return nil, err
		}
	}
	top := h.TopDir
	if top == "" {
		top = DefaultTopDir
	}
	if opts.Scratch {
		var dirs []string
		for _, id := range subtasks {
			dirs = append(dirs, path.Join(top, "work", TaskRelPath(id)))
		}
		return "Scratch image build results in: " + strings.Join(dirs, ", "), nil
	}
	return "image build results in: " + path.Join(top, "packages", name, version, release, "images"), nil
}

// imageBuild returns the image build of this task: the one a previous run
// of the same task created (the task was freed and restarted), else a new
// one from host.initImageBuild.
func (h ImageBuilderBuild) imageBuild(ctx context.Context, t *Task, name, version, release string) (*koji.Build, error) {
	var prev []koji.Build
	if err := t.Hub.CallInto(ctx, &prev, "listBuilds", koji.Kwargs{"taskID": t.Info.ID}); err != nil {
		return nil, err
	}
	for _, b := range prev {
		if b.State == koji.BuildBuilding || b.State == koji.BuildComplete {
			t.Log.Info("reusing the image build of an earlier run of this task", "build", b.ID, "nvr", b.NVR)
			return &b, nil
		}
	}
	b, err := t.Hub.InitImageBuild(ctx, t.Info.ID, koji.NVR{Name: name, Version: version, Release: release})
	if err != nil {
		return nil, err
	}
	t.Log.Info("image build created", "build", b.ID, "nvr", fmt.Sprintf("%s-%s-%s", b.Name, b.Version, b.Release))
	return b, nil
}

// buildArches runs the arch subtasks, waits for them and imports their
// results (or moves them to scratch).
func (h ImageBuilderBuild) buildArches(ctx context.Context, t *Task, name, version, release string, arches, types []string,
	rawTarget, rawConfig, rawRepo any, opts *BuildOpts, build *koji.Build) ([]int64, error) {
	hub := t.Hub
	typeList := make([]any, len(types))
	for i, s := range types {
		typeList[i] = s
	}
	// As upstream, the subtasks get the opts with scratch made explicit.
	sub := make(map[string]any, len(opts.raw)+1)
	for k, v := range opts.raw {
		sub[k] = v
	}
	sub["scratch"] = opts.Scratch
	var ids, canfail []int64
	for _, arch := range arches {
		args := []any{name, version, release, arch, typeList, rawTarget, rawConfig, orNil(rawRepo), sub}
		id, err := hub.Subtask(ctx, "imageBuilderBuildArch", args, t.Info.ID, koji.SubtaskOpts{Label: arch, Arch: arch})
		if err != nil {
			return nil, fmt.Errorf("creating the %s subtask: %w", arch, err)
		}
		t.Log.Info("arch subtask", "arch", arch, "subtask", id)
		ids = append(ids, id)
		if slices.Contains(opts.FailableArches, arch) {
			canfail = append(canfail, id)
		}
	}
	results, err := t.Wait(ctx, ids, WaitOptions{All: true, CanFail: canfail})
	if err != nil {
		return ids, err
	}
	allFailed := true
	for _, r := range results {
		if m, ok := r.(map[string]any); !ok || m["faultCode"] == nil {
			allFailed = false
		}
	}
	if allFailed {
		return ids, &koji.Fault{Code: koji.CodeGeneric, String: "all subtasks failed"}
	}
	byStr := make(map[string]any, len(results))
	for id, r := range results {
		byStr[fmt.Sprint(id)] = r
	}
	if opts.Scratch {
		_, err = hub.Call(ctx, "host.moveImageBuildToScratch", t.Info.ID, byStr)
	} else {
		_, err = hub.Call(ctx, "host.completeImageBuild", t.Info.ID, build.ID, byStr)
	}
	if errors.Is(err, koji.ErrCommitted) {
		err = nil
	}
	return ids, err
}
