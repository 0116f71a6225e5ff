package koji

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Build states (koji.BUILD_STATES).
const (
	BuildBuilding = 0
	BuildComplete = 1
	BuildDeleted  = 2
	BuildFailed   = 3
	BuildCanceled = 4
)

// NVR names a build.
type NVR struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Release string `json:"release"`
	Epoch   *int   `json:"epoch"`
}

// Reservation is what CGInitBuild returns.
type Reservation struct {
	BuildID int64  `json:"build_id"`
	Token   string `json:"token"`
}

// Build is a build record (getBuild).
type Build struct {
	ID             int64          `json:"id"`
	Name           string         `json:"name"`
	Version        string         `json:"version"`
	Release        string         `json:"release"`
	Epoch          *int           `json:"epoch"`
	NVR            string         `json:"nvr"`
	State          int            `json:"state"`
	OwnerName      string         `json:"owner_name"`
	CGName         *string        `json:"cg_name"`
	TaskID         *int64         `json:"task_id"`
	Extra          map[string]any `json:"extra"`
	StartTS        *float64       `json:"start_ts"`
	CompletionTS   *float64       `json:"completion_ts"`
	VolumeName     string         `json:"volume_name"`
	CompletionTime *string        `json:"completion_time"`
}

// Archive is one archive of a build (listArchives).
type Archive struct {
	ID           int64          `json:"id"`
	BuildID      int64          `json:"build_id"`
	BuildrootID  *int64         `json:"buildroot_id"`
	Filename     string         `json:"filename"`
	Size         int64          `json:"size"`
	Checksum     string         `json:"checksum"`
	ChecksumType int            `json:"checksum_type"`
	BType        string         `json:"btype"`
	TypeName     string         `json:"type_name"`
	Arch         string         `json:"arch"`
	Extra        map[string]any `json:"extra"`
	MetadataOnly bool           `json:"metadata_only"`
}

// BuildLog is one log of a build (getBuildLogs); Path is relative to topdir.
type BuildLog struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	Path string `json:"path"`
}

// BuildTarget is a build target (getBuildTarget).
type BuildTarget struct {
	ID           int64  `json:"id"`
	Name         string `json:"name"`
	BuildTag     int64  `json:"build_tag"`
	BuildTagName string `json:"build_tag_name"`
	DestTag      int64  `json:"dest_tag"`
	DestTagName  string `json:"dest_tag_name"`
}

// Tag is a tag record; from getBuildConfig, Arches and Extra are inherited.
type Tag struct {
	ID     int64          `json:"id"`
	Name   string         `json:"name"`
	Arches *string        `json:"arches"`
	Locked bool           `json:"locked"`
	Perm   *string        `json:"perm"`
	Extra  map[string]any `json:"extra"`
}

// ArchList returns the tag's arches as a list.
func (t *Tag) ArchList() []string {
	if t.Arches == nil {
		return nil
	}
	return strings.Fields(*t.Arches)
}

// Repo is a repository of a tag (getRepo).
type Repo struct {
	ID          int64  `json:"id"`
	TagID       int64  `json:"tag_id"`
	TagName     string `json:"tag_name"`
	State       int    `json:"state"`
	CreateEvent int64  `json:"create_event"`
}

// TaskInfo is a task record (getTaskInfo, host.openTask). Request is the
// decoded request with getTaskInfo(request=True), or the raw methodCall XML
// string from host.openTask.
type TaskInfo struct {
	ID       int64   `json:"id"`
	State    int     `json:"state"`
	Method   string  `json:"method"`
	Arch     string  `json:"arch"`
	Channel  int64   `json:"channel_id"`
	HostID   *int64  `json:"host_id"`
	Parent   *int64  `json:"parent"`
	Label    *string `json:"label"`
	Owner    int64   `json:"owner"`
	Priority int     `json:"priority"`
	Weight   float64 `json:"weight"`
	Waiting  *bool   `json:"waiting"`
	Awaited  *bool   `json:"awaited"`
	Request  any     `json:"request"`
}

// Task states (koji.TASK_STATES).
const (
	TaskFree     = 0
	TaskOpen     = 1
	TaskClosed   = 2
	TaskCanceled = 3
	TaskAssigned = 4
	TaskFailed   = 5
)

// CGInitBuild reserves a build for content generator cg.
func (c *Client) CGInitBuild(ctx context.Context, cg string, nvr NVR) (*Reservation, error) {
	var r Reservation
	data := map[string]any{"name": nvr.Name, "version": nvr.Version, "release": nvr.Release}
	if nvr.Epoch != nil {
		data["epoch"] = *nvr.Epoch
	}
	if err := c.CallInto(ctx, &r, "CGInitBuild", cg, data); err != nil {
		return nil, err
	}
	return &r, nil
}

// CGImportAttempts is how often CGImport is tried when the hub reports a
// corrupted upload (storage lag between hub replicas), as composer does.
const CGImportAttempts = 10

// CGImport imports a build: metadata (marshalled to JSON and sent as a
// string), outputs uploaded under dir, and the reservation token. It is
// retried, a second apart, while the hub answers "Corrupted upload".
func (c *Client) CGImport(ctx context.Context, metadata any, dir, token string) (*Build, error) {
	raw, err := json.Marshal(metadata)
	if err != nil {
		return nil, fmt.Errorf("koji: CGImport metadata: %w", err)
	}
	args := []any{string(raw), dir}
	if token != "" {
		args = append(args, token)
	}
	var lastErr error
	for attempt := 1; attempt <= CGImportAttempts; attempt++ {
		var b Build
		err := c.CallInto(ctx, &b, "CGImport", args...)
		if err == nil {
			return &b, nil
		}
		lastErr = err
		if errors.Is(err, ErrCommitted) {
			// The import went through; its answer was lost.
			var m struct {
				Build NVR `json:"build"`
			}
			if jerr := json.Unmarshal(raw, &m); jerr == nil {
				return c.GetBuild(ctx, m.Build.Name+"-"+m.Build.Version+"-"+m.Build.Release)
			}
			return nil, err
		}
		if !errors.Is(err, ErrGeneric) || !strings.Contains(err.Error(), "Corrupted upload") {
			return nil, err
		}
		c.log.DebugContext(ctx, "CGImport: corrupted upload, retrying", "attempt", attempt, "err", err)
		if serr := c.sleepF(ctx, c.retry.Interval); serr != nil {
			return nil, serr
		}
	}
	return nil, fmt.Errorf("koji: failed to import a build after %d attempts: %w", CGImportAttempts, lastErr)
}

// CGRefundBuild gives up a reservation, setting the build FAILED or
// CANCELED.
func (c *Client) CGRefundBuild(ctx context.Context, cg string, buildID int64, token string, state int) error {
	return c.voidCall(ctx, "CGRefundBuild", cg, buildID, token, state)
}

// voidCall runs a call without a result; a call whose first attempt
// committed counts as done.
func (c *Client) voidCall(ctx context.Context, method string, args ...any) error {
	_, err := c.Call(ctx, method, args...)
	if errors.Is(err, ErrCommitted) {
		return nil
	}
	return err
}

// GetBuild returns a build by id, "name-version-release" or NVR; strict:
// a missing build is a fault.
func (c *Client) GetBuild(ctx context.Context, build any) (*Build, error) {
	var b *Build
	if err := c.CallInto(ctx, &b, "getBuild", build, Kwargs{"strict": true}); err != nil {
		return nil, err
	}
	return b, nil
}

// CancelBuild cancels a BUILDING build the caller owns (cancelBuild), which
// also drops a content generator's reservation of it; it reports whether the
// build was canceled.
func (c *Client) CancelBuild(ctx context.Context, buildID int64) (bool, error) {
	var ok bool
	return ok, c.CallInto(ctx, &ok, "cancelBuild", buildID)
}

// LoggedInUser returns the name of the session's user (getLoggedInUser).
func (c *Client) LoggedInUser(ctx context.Context) (string, error) {
	var u *struct {
		Name string `json:"name"`
	}
	if err := c.CallInto(ctx, &u, "getLoggedInUser"); err != nil {
		return "", err
	}
	if u == nil {
		return "", errors.New("getLoggedInUser: not logged in")
	}
	return u.Name, nil
}

// ListArchives lists the archives of a build; btype ("image", ...) may be
// empty for all.
func (c *Client) ListArchives(ctx context.Context, buildID int64, btype string) ([]Archive, error) {
	kw := Kwargs{"buildID": buildID}
	if btype != "" {
		kw["type"] = btype
	}
	var out []Archive
	return out, c.CallInto(ctx, &out, "listArchives", kw)
}

// GetBuildLogs lists the logs of a build.
func (c *Client) GetBuildLogs(ctx context.Context, build any) ([]BuildLog, error) {
	var out []BuildLog
	return out, c.CallInto(ctx, &out, "getBuildLogs", build)
}

// GetBuildTarget returns a build target by name or id (strict).
func (c *Client) GetBuildTarget(ctx context.Context, target any) (*BuildTarget, error) {
	var t *BuildTarget
	return t, c.CallInto(ctx, &t, "getBuildTarget", target, Kwargs{"strict": true})
}

// GetBuildConfig returns a tag with arches and extra resolved through
// inheritance.
func (c *Client) GetBuildConfig(ctx context.Context, tag any) (*Tag, error) {
	var t *Tag
	return t, c.CallInto(ctx, &t, "getBuildConfig", tag)
}

// GetTag returns a tag by name or id (strict).
func (c *Client) GetTag(ctx context.Context, tag any) (*Tag, error) {
	var t *Tag
	return t, c.CallInto(ctx, &t, "getTag", tag, Kwargs{"strict": true})
}

// GetRepo returns the newest READY repo of a tag, or nil if there is none.
func (c *Client) GetRepo(ctx context.Context, tag any) (*Repo, error) {
	var r *Repo
	return r, c.CallInto(ctx, &r, "getRepo", tag)
}

// GetNextRelease returns the next release for name and version.
func (c *Client) GetNextRelease(ctx context.Context, name, version string) (string, error) {
	var s string
	return s, c.CallInto(ctx, &s, "getNextRelease", map[string]any{"name": name, "version": version})
}

// GetTaskInfo returns a task; request adds its decoded request.
func (c *Client) GetTaskInfo(ctx context.Context, id int64, request bool) (*TaskInfo, error) {
	var t *TaskInfo
	return t, c.CallInto(ctx, &t, "getTaskInfo", id, Kwargs{"request": request, "strict": true})
}

// GetTaskResult returns a finished task's result; a failed task's fault is
// returned as the error.
func (c *Client) GetTaskResult(ctx context.Context, id int64) (any, error) {
	return c.Call(ctx, "getTaskResult", id)
}

// ListTaskOutput lists the files a task uploaded.
func (c *Client) ListTaskOutput(ctx context.Context, id int64) ([]string, error) {
	var out []string
	return out, c.CallInto(ctx, &out, "listTaskOutput", id)
}

// DownloadTaskOutput copies a task output file to w in chunks of
// Options.UploadChunkSize and returns the number of bytes written.
func (c *Client) DownloadTaskOutput(ctx context.Context, id int64, name string, w io.Writer) (int64, error) {
	var off int64
	for {
		v, err := c.Call(ctx, "downloadTaskOutput", id, name, Kwargs{"offset": off, "size": int64(c.chunk)})
		if err != nil {
			return off, err
		}
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string: // a hub may send base64 as a plain string
			if err := Convert(x, &b); err != nil {
				return off, err
			}
		default:
			return off, fmt.Errorf("koji: downloadTaskOutput: %w: got %T", ErrMalformed, v)
		}
		n, err := w.Write(b)
		off += int64(n)
		if err != nil {
			return off, err
		}
		if len(b) < c.chunk {
			return off, nil
		}
	}
}
