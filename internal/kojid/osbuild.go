package kojid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// OSBuildConfig configures the osbuildImage handler (koji-osbuild's
// builder plugin and its builder.conf).
type OSBuildConfig struct {
	// KojiServer is the hub URL put into every compose request's koji
	// block ([koji] server in builder.conf): the hub the compose service
	// imports the build into. Required.
	KojiServer string
	// TopURL is the hub's file URL (kojid.conf topurl), for the build tag's
	// repository: TopURL/repos/TAG/REPOID/$arch. Required unless every task
	// names its repositories.
	TopURL string
	// Composer is the compose service of remote mode; nil selects local
	// mode.
	Composer *ComposerConfig
	// Local builds on this host when Composer is nil.
	Local *LocalConfig
	// PollMin and PollMax bound the compose status poll interval: it starts
	// at PollMin and grows while nothing changes up to PollMax. Defaults
	// 100 ms and 2 s (the plugin's fixed interval).
	PollMin, PollMax time.Duration
	// PollFinish is the interval once every image is built and only the
	// Koji import remains, and the first interval of waiting for the
	// tagBuild subtask, so the task ends soon after the compose does.
	// Default 25 ms (or PollMin if that is shorter).
	PollFinish time.Duration
	// Deadline bounds one task from compose creation to its end. Default
	// 12h.
	Deadline time.Duration
}

// OSBuildImageWeight is the task weight of osbuildImage, as the builder
// plugin declares it: the host mostly waits on the compose service.
const OSBuildImageWeight = 0.2

// OSBuildImage runs osbuildImage tasks: it turns each into a Cloud API
// compose with a koji block (remote mode, or the same compose service
// running on this host in local mode), watches it, attaches its status,
// manifests and logs to the task and tags the build. It is safe for
// concurrent use; Close releases local mode's service.
type OSBuildImage struct {
	cfg    OSBuildConfig
	server string // composer.server in the task result
	api    *cloudAPI
	local  *localService
}

var _ Handler = (*OSBuildImage)(nil)

// NewOSBuildImage checks cfg and returns the handler. It does no I/O; local
// mode's service starts with the first task.
func NewOSBuildImage(cfg OSBuildConfig) (*OSBuildImage, error) {
	if cfg.KojiServer == "" {
		return nil, errors.New("osbuildImage: koji server is required")
	}
	if cfg.PollMin <= 0 {
		cfg.PollMin = 100 * time.Millisecond
	}
	if cfg.PollMax <= 0 {
		cfg.PollMax = 2 * time.Second
	}
	cfg.PollMax = max(cfg.PollMax, cfg.PollMin)
	if cfg.PollFinish <= 0 {
		cfg.PollFinish = min(25*time.Millisecond, cfg.PollMin)
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 12 * time.Hour
	}
	h := &OSBuildImage{cfg: cfg}
	if cfg.Composer != nil {
		api, err := newCloudAPI(*cfg.Composer)
		if err != nil {
			return nil, err
		}
		h.api, h.server = api, cfg.Composer.Server
		return h, nil
	}
	if cfg.Local == nil {
		return nil, errors.New("osbuildImage: a composer server (remote mode) or a local build configuration is required")
	}
	l, err := newLocalService(cfg.KojiServer, *cfg.Local)
	if err != nil {
		return nil, err
	}
	h.local, h.server = l, localServer
	return h, nil
}

// Close stops local mode's compose service, waiting for its jobs to stop.
func (h *OSBuildImage) Close(ctx context.Context) error {
	if h.local != nil {
		return h.local.close(ctx)
	}
	return nil
}

// osbuildArgs are the task's arguments, as the hub plugin stored them.
type osbuildArgs struct {
	name, version, distro, imageType, target string
	arches                                   []string
	opts                                     map[string]any
}

func buildError(format string, a ...any) *koji.Fault {
	return &koji.Fault{Code: koji.CodeBuild, String: fmt.Sprintf(format, a...)}
}

func paramFault(format string, a ...any) *koji.Fault {
	return &koji.Fault{Code: koji.CodeParameter, String: fmt.Sprintf(format, a...)}
}

// parseOSBuildArgs reads osbuildImage(name, version, distro, image_type,
// target, arches, opts).
func parseOSBuildArgs(params []any, kw map[string]any) (*osbuildArgs, error) {
	names := []string{"name", "version", "distro", "image_type", "target", "arches", "opts"}
	vals := make([]any, len(names))
	for i, n := range names {
		switch {
		case i < len(params):
			vals[i] = params[i]
		default:
			vals[i] = kw[n]
		}
	}
	if len(params) > len(names) {
		return nil, paramFault("osbuildImage takes 7 arguments, %d given", len(params))
	}
	a := &osbuildArgs{opts: map[string]any{}}
	strs := []*string{&a.name, &a.version, &a.distro, &a.imageType, &a.target}
	for i, p := range strs {
		v := vals[i]
		if l, ok := v.([]any); ok && i == 3 && len(l) == 1 {
			v = l[0] // the deprecated one-element list of image types
		}
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, paramFault("%s: must be a non-empty string, not %v", names[i], v)
		}
		*p = s
	}
	arches, ok := vals[5].([]any)
	if !ok || len(arches) == 0 {
		return nil, paramFault("arches: must be a non-empty list of strings, not %v", vals[5])
	}
	for _, v := range arches {
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, paramFault("arches: %v is not an architecture name", v)
		}
		a.arches = append(a.arches, s)
	}
	if vals[6] != nil {
		m, ok := vals[6].(map[string]any)
		if !ok {
			return nil, paramFault("opts: must be a struct, not %T", vals[6])
		}
		a.opts = m
	}
	return a, nil
}

// kojiAPIImageTypes maps the image type names of Koji's image API to
// Cloud API names, as the builder plugin does.
var kojiAPIImageTypes = map[string]string{
	"qcow2":   "guest-image",
	"ec2":     "aws-rhui",
	"ec2-ha":  "aws-ha-rhui",
	"ec2-sap": "aws-sap-rhui",
}

var x86 = regexp.MustCompile(`^(i[3-6]86|athlon|geode)$`)

// canonArch is koji.canonArch for the arches a build tag lists.
func canonArch(a string) string {
	if x86.MatchString(a) {
		return "i386"
	}
	return a
}

// pySet renders names as Python prints a set of strings.
func pySet(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "{" + strings.Join(q, ", ") + "}"
}

// substArch replaces $arch and ${arch} as Python's string.Template does.
func substArch(s, arch string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			b.WriteByte('$')
			i++
		case strings.HasPrefix(rest, "{arch}"):
			b.WriteString(arch)
			i += len("{arch}")
		case strings.HasPrefix(rest, "arch") && (len(rest) == 4 || !isIdent(rest[4])):
			b.WriteString(arch)
			i += len("arch")
		default:
			return "", fmt.Errorf("%q: only $arch may be substituted (Invalid placeholder at index %d)", s, i)
		}
	}
	return b.String(), nil
}

func isIdent(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// composeRepo is one repository option: a URL, with package sets.
type composeRepo struct {
	baseurl     string
	packageSets []string
}

// Handle runs one osbuildImage task.
func (h *OSBuildImage) Handle(ctx context.Context, t *Task) (any, error) {
	if t.Log == nil {
		t.Log = slog.New(slog.DiscardHandler)
	}
	log := t.Log
	a, err := parseOSBuildArgs(t.Params, t.Kwargs)
	if err != nil {
		return nil, err
	}
	log.Info("building image via the compose service", "name", a.name, "version", a.version, "distro", a.distro,
		"image_type", a.imageType, "target", a.target, "arches", a.arches, "mode", h.server)

	target, err := t.Hub.GetBuildTarget(ctx, a.target)
	if err != nil {
		return nil, err
	}
	if target == nil {
		return nil, buildError("Target '%s' not found", a.target)
	}
	bc, err := t.Hub.GetBuildConfig(ctx, target.BuildTag)
	if err != nil {
		return nil, err
	}
	tagArches := map[string]bool{}
	for _, ar := range bc.ArchList() {
		tagArches[canonArch(ar)] = true
	}
	if len(tagArches) == 0 {
		return nil, buildError("Missing arches for tag '%s'", bc.Name)
	}
	var unsupported []string
	for _, ar := range a.arches {
		if !tagArches[ar] && !slices.Contains(unsupported, ar) {
			unsupported = append(unsupported, ar)
		}
	}
	if len(unsupported) > 0 {
		sort.Strings(unsupported)
		return nil, buildError("Unsupported architecture(s): %s", pySet(unsupported))
	}

	repos, err := h.repos(ctx, t, a, target)
	if err != nil {
		return nil, err
	}
	release, _ := a.opts["release"].(string)
	if release == "" {
		if release, err = t.Hub.GetNextRelease(ctx, a.name, a.version); err != nil {
			return nil, err
		}
	}
	imageType := a.imageType
	if m, ok := kojiAPIImageTypes[imageType]; ok {
		log.Debug("mapped koji api image type", "from", imageType, "to", m)
		imageType = m
	}

	var ostree map[string]any
	if o, ok := a.opts["ostree"].(map[string]any); ok && len(o) > 0 {
		ostree = o
	}
	var images []map[string]any
	for _, arch := range a.arches {
		var rs []map[string]any
		for _, r := range repos {
			u, err := substArch(r.baseurl, arch)
			if err != nil {
				return nil, paramFault("repo: %v", err)
			}
			rm := map[string]any{"baseurl": u, "rhsm": false}
			if len(r.packageSets) > 0 {
				rm["package_sets"] = r.packageSets
			}
			rs = append(rs, rm)
		}
		img := map[string]any{"architecture": arch, "image_type": imageType, "repositories": rs}
		if ostree != nil {
			o := map[string]any{}
			for _, k := range []string{"parent", "ref"} {
				if s, _ := ostree[k].(string); s != "" {
					if o[k], err = substArch(s, arch); err != nil {
						return nil, paramFault("ostree.%s: %v", k, err)
					}
				}
			}
			if s, _ := ostree["url"].(string); s != "" {
				o["url"] = s
			}
			img["ostree"] = o
		}
		if uo, ok := a.opts["upload_options"].(map[string]any); ok && len(uo) > 0 {
			img["upload_options"] = uo
		}
		images = append(images, img)
	}
	req := map[string]any{
		"distribution": a.distro,
		"koji": map[string]any{"name": a.name, "version": a.version, "release": release,
			"server": h.cfg.KojiServer, "task_id": t.Info.ID},
		"image_requests": images,
	}
	if c, ok := a.opts["customizations"].(map[string]any); ok && len(c) > 0 {
		req["customizations"] = c
	}
	if err := h.uploadJSON(ctx, t, "compose-request", req); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}

	api := h.api
	if h.local != nil {
		if api, err = h.local.start(ctx); err != nil {
			return nil, fmt.Errorf("starting the local compose service: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Deadline)
	defer cancel()
	cid, err := api.createCompose(ctx, body)
	if err != nil {
		return nil, &koji.Fault{Code: koji.CodeGeneric, String: err.Error()}
	}
	log.Info("compose created", "compose", cid)
	st, werr := h.wait(ctx, t, api, cid)
	// Manifests and logs are attached however the compose ended.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer acancel()
	h.attachManifests(actx, t, api, cid, images)
	h.attachLogs(actx, t, api, cid, images)
	if werr != nil {
		if errors.Is(werr, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, buildError("Compose %s did not finish within %s", cid, h.cfg.Deadline)
		}
		return nil, werr
	}
	log.Info("compose finished", "compose", cid, "status", st.Status)
	if st.Status != "success" {
		return nil, buildError("Compose failed (id: %s)%s", cid, composeErrors(st, images))
	}
	if st.KojiStatus == nil || st.KojiStatus.BuildID == nil {
		return nil, buildError("Compose %s succeeded without a Koji build id", cid)
	}
	bid := *st.KojiStatus.BuildID
	if skip, _ := a.opts["skip_tag"].(bool); !skip {
		if err := h.tagBuild(ctx, t, target.DestTag, bid); err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"composer": map[string]any{"server": h.server, "id": cid},
		"koji":     map[string]any{"build": bid},
	}, nil
}

// composeErrors lists each failed image's error for the task's fault.
func composeErrors(st *composeStatus, images []map[string]any) string {
	var b strings.Builder
	for i, is := range st.ImageStatuses {
		if is.Error == nil {
			continue
		}
		name := fmt.Sprintf("image %d", i)
		if i < len(images) {
			name = fmt.Sprintf("%s %s", images[i]["architecture"], images[i]["image_type"])
		}
		fmt.Fprintf(&b, "; %s: %s", name, is.Error.Reason)
		var text string
		if json.Unmarshal(is.Error.Details, &text) != nil {
			text = string(is.Error.Details)
		}
		if text != "" && text != "null" {
			fmt.Fprintf(&b, " (%s)", text)
		}
	}
	return b.String()
}

// repos are the task's repositories: opts.repo, or the build tag's latest
// repo with /$arch appended.
func (h *OSBuildImage) repos(ctx context.Context, t *Task, a *osbuildArgs, target *koji.BuildTarget) ([]composeRepo, error) {
	if list, ok := a.opts["repo"].([]any); ok && len(list) > 0 {
		var out []composeRepo
		for i, r := range list {
			switch x := r.(type) {
			case string:
				out = append(out, composeRepo{baseurl: x})
			case map[string]any:
				u, _ := x["baseurl"].(string)
				if u == "" {
					return nil, paramFault("repo[%d].baseurl: required", i)
				}
				cr := composeRepo{baseurl: u}
				ps, _ := x["package_sets"].([]any)
				for _, p := range ps {
					if s, ok := p.(string); ok {
						cr.packageSets = append(cr.packageSets, s)
					}
				}
				out = append(out, cr)
			default:
				return nil, paramFault("repo[%d]: must be a URL or a struct with baseurl", i)
			}
		}
		return out, nil
	}
	repo, err := t.Hub.GetRepo(ctx, target.BuildTag)
	if err != nil {
		return nil, err
	}
	if repo == nil {
		return nil, buildError("No repo for build tag %s, and the task names no repositories", target.BuildTagName)
	}
	if h.cfg.TopURL == "" {
		return nil, buildError("kojid has no topurl for the build tag's repository; give the task opts.repo")
	}
	u := fmt.Sprintf("%s/repos/%s/%d/$arch", strings.TrimRight(h.cfg.TopURL, "/"), target.BuildTagName, repo.ID)
	return []composeRepo{{baseurl: u}}, nil
}

// uploadJSON attaches name.json to the task, formatted as the plugin does
// (sorted keys, four-space indent).
func (h *OSBuildImage) uploadJSON(ctx context.Context, t *Task, name string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if raw, ok := v.(json.RawMessage); ok {
		// Re-encode through a generic value so keys are sorted.
		var x any
		if err := json.Unmarshal(raw, &x); err == nil {
			v = x
		}
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding %s.json: %w", name, err)
	}
	data := bytes.TrimRight(buf.Bytes(), "\n")
	if _, err := t.Upload(ctx, name+".json", bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("uploading %s.json: %w", name, err)
	}
	return nil
}

// statusFile is compose-status.json: the plugin's fields, with
// koji_task_id filled in from the task when the service leaves it out.
func statusFile(st *composeStatus, raw []byte, taskID int64) map[string]any {
	var js struct {
		KojiStatus map[string]any `json:"koji_status"`
	}
	_ = json.Unmarshal(raw, &js)
	var images []any
	for _, is := range st.ImageStatuses {
		m := map[string]any{"status": strings.ToLower(is.Status)}
		if len(is.UploadStatus) > 0 && string(is.UploadStatus) != "null" {
			m["upload_status"] = is.UploadStatus
		}
		if is.Error != nil {
			e := map[string]any{"id": is.Error.ID, "reason": is.Error.Reason}
			if len(is.Error.Details) > 0 && string(is.Error.Details) != "null" {
				e["details"] = is.Error.Details
			}
			m["error"] = e
		}
		images = append(images, m)
	}
	if images == nil {
		images = []any{}
	}
	task := js.KojiStatus["task_id"]
	if task == nil {
		task = taskID
	}
	out := map[string]any{"status": st.Status, "koji_task_id": task, "image_statuses": images}
	if id := js.KojiStatus["build_id"]; id != nil {
		out["koji_build_id"] = id
	}
	return out
}

// wait polls the compose until it succeeds or fails, uploading
// compose-status.json whenever it changes. The interval starts at PollMin
// and doubles while nothing changes, up to PollMax; once every image is
// built and only the Koji import remains, it is PollFinish, so the task
// learns of the finished compose within PollFinish.
func (h *OSBuildImage) wait(ctx context.Context, t *Task, api *cloudAPI, cid string) (*composeStatus, error) {
	interval := h.cfg.PollMin
	var last []byte
	for {
		st, raw, err := api.status(ctx, cid)
		if err != nil {
			return nil, &koji.Fault{Code: koji.CodeGeneric, String: err.Error()}
		}
		file, _ := json.Marshal(statusFile(st, raw, t.Info.ID))
		finished := st.Status == "success" || st.Status == "failure"
		if !bytes.Equal(file, last) {
			if err := h.uploadJSON(ctx, t, "compose-status", json.RawMessage(file)); err != nil {
				return nil, err
			}
			last, interval = file, h.cfg.PollMin
		} else if !imagesDone(st) {
			interval = min(2*interval, h.cfg.PollMax)
		}
		if imagesDone(st) {
			interval = h.cfg.PollFinish
		}
		if finished {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

func imagesDone(st *composeStatus) bool {
	for _, is := range st.ImageStatuses {
		if s := strings.ToLower(is.Status); s != "success" && s != "failure" {
			return false
		}
	}
	return true
}

func (h *OSBuildImage) attachManifests(ctx context.Context, t *Task, api *cloudAPI, cid string, images []map[string]any) {
	ms, err := api.manifests(ctx, cid)
	if err != nil {
		t.Log.Warn("failed to fetch manifests", "err", err)
		return
	}
	for i, m := range ms {
		if i >= len(images) {
			break
		}
		name := fmt.Sprintf("%s-%s.manifest", images[i]["architecture"], images[i]["image_type"])
		if err := h.uploadJSON(ctx, t, name, m); err != nil {
			t.Log.Warn("failed to attach manifest", "name", name, "err", err)
		}
	}
}

func (h *OSBuildImage) attachLogs(ctx context.Context, t *Task, api *cloudAPI, cid string, images []map[string]any) {
	l, err := api.logs(ctx, cid)
	if err != nil {
		t.Log.Warn("failed to fetch logs", "err", err)
		return
	}
	up := func(name string, v json.RawMessage) {
		if len(v) == 0 || string(v) == "null" {
			return
		}
		if err := h.uploadJSON(ctx, t, name, v); err != nil {
			t.Log.Warn("failed to attach log", "name", name, "err", err)
		}
	}
	if l.Koji != nil {
		up("koji-init.log", l.Koji.Init)
		up("koji-import.log", l.Koji.Import)
	}
	for i, lg := range l.ImageBuilds {
		if i < len(images) {
			up(fmt.Sprintf("%s-%s.log", images[i]["architecture"], images[i]["image_type"]), lg)
		}
	}
}

// tagBuild runs a tagBuild subtask (tag, build, force=False,
// fromtag=None, ignore_success=True) and waits for it, as the plugin does.
func (h *OSBuildImage) tagBuild(ctx context.Context, t *Task, tag, build int64) error {
	id, err := t.Hub.Subtask(ctx, "tagBuild", []any{tag, build, false, nil, true}, t.Info.ID,
		koji.SubtaskOpts{Label: "tag", Arch: "noarch"})
	if err != nil {
		return fmt.Errorf("creating the tagBuild subtask: %w", err)
	}
	if err := t.Hub.TaskSetWait(ctx, t.Info.ID, []int64{id}); err != nil {
		return err
	}
	interval := h.cfg.PollFinish
	for {
		finished, _, err := t.Hub.TaskWait(ctx, t.Info.ID)
		if err != nil {
			return err
		}
		if slices.Contains(finished, id) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		interval = min(2*interval, h.cfg.PollMax)
	}
	_, err = t.Hub.TaskWaitResults(ctx, t.Info.ID, []int64{id}, nil)
	return err
}
