package kojid

import (
	"context"
	"fmt"

	"github.com/kib-project/kib/internal/koji"
)

// TagBuild handles tagBuild(tag, build, force=False, fromtag=None,
// ignore_success=False) as kojid's TagBuildTask does: it checks the build
// and tag exist, tags with host.tagBuild and reports the outcome with
// host.tagNotification. Its result is nil.
type TagBuild struct{}

var _ Handler = TagBuild{}

// Weight is kojid's _taskWeight for tagBuild.
func (TagBuild) Weight() float64 { return 0.1 }

// Handle runs the task.
func (TagBuild) Handle(ctx context.Context, t *Task) (any, error) {
	p := params{t}
	if len(t.Params) < 2 {
		return nil, &koji.Fault{Code: koji.CodeParameter, String: fmt.Sprintf("tagBuild takes 2 to 5 arguments, %d given", len(t.Params))}
	}
	tagID, buildID := t.Params[0], t.Params[1]
	force, _ := p.opt(2, "force").(bool)
	fromtag := p.opt(3, "fromtag")
	ignoreSuccess, _ := p.opt(4, "ignore_success").(bool)
	notify := func(ok bool, msg string) {
		args := []any{ok, tagID, orNil(fromtag), buildID, t.Info.Owner, ignoreSuccess}
		if msg != "" {
			args = append(args, msg)
		}
		if _, err := t.Hub.Call(ctx, "host.tagNotification", args...); err != nil {
			t.Log.Warn("host.tagNotification", "err", err)
		}
	}
	err := func() error {
		b, err := t.Hub.GetBuild(ctx, buildID)
		if err != nil {
			return err
		}
		tag, err := t.Hub.GetTag(ctx, tagID)
		if err != nil {
			return err
		}
		t.Log.Info("tagging", "build", b.NVR, "tag", tag.Name)
		kw := koji.Kwargs{"force": force}
		if fromtag != nil {
			kw["fromtag"] = fromtag
		}
		_, err = t.Hub.Call(ctx, "host.tagBuild", t.Info.ID, tagID, buildID, kw)
		return err
	}()
	if err != nil {
		notify(false, err.Error())
		return nil, err
	}
	notify(true, "")
	return nil, nil
}

func orNil(v any) any {
	if v == nil {
		return koji.Nil
	}
	return v
}

// params reads positional-or-keyword task arguments.
type params struct{ t *Task }

func (p params) opt(i int, name string) any {
	if i < len(p.t.Params) {
		return p.t.Params[i]
	}
	return p.t.Kwargs[name]
}
