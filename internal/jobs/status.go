package jobs

import (
	"encoding/json"
	"time"
)

// Worker client error codes, as osbuild-composer numbers them; they appear
// in the image "error" field of a compose status.
const (
	ErrIDBuildJob             = 10
	ErrIDKojiFailedDependency = 13
	ErrIDKojiBuild            = 14
	ErrIDKojiInit             = 15
	ErrIDKojiFinalize         = 16
	ErrIDInvalidConfig        = 17
	ErrIDJobDependency        = 26
	ErrIDJobMissingHeartbeat  = 27
	ErrIDTargetError          = 28
	ErrIDManifestGeneration   = 8
	ErrIDParsingDynamicArgs   = 7
	ErrIDUploadingImage       = 11
	ErrIDParsingJobArgs       = 29
)

// dependencyErrors are the job error ids that mean "a dependency failed";
// the error chain recurses into the dependencies for them.
var dependencyErrors = map[int]bool{5: true, 9: true, ErrIDKojiFailedDependency: true, ErrIDJobDependency: true, 31: true, 35: true}

// JobError is a job's failure, in composer's ClientError form.
type JobError struct {
	ID      int    `json:"id"`
	Reason  string `json:"reason"`
	Details any    `json:"details,omitempty"`
}

// InitResult is the stored result of a koji-init job.
type InitResult struct {
	BuildID   uint64    `json:"build_id"`
	Token     string    `json:"token"`
	KojiError string    `json:"koji_error"`
	JobError  *JobError `json:"job_error,omitempty"`
	// Reserving marks a CGInitBuild call whose answer is not stored yet.
	Reserving bool `json:"reserving,omitempty"`
}

// PublicInitResult returns a koji-init result as clients may see it: the
// reservation token, with which anyone could import into or refund the
// build, is removed.
func PublicInitResult(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return json.RawMessage("{}")
	}
	if _, ok := m["token"]; !ok {
		return raw
	}
	m["token"] = json.RawMessage(`""`)
	b, _ := json.Marshal(m)
	return b
}

// BuildJobResult is the stored result of a build job. Its content is shown
// in the compose logs; clients must not rely on more than success and
// job_error.
type BuildJobResult struct {
	Success        bool           `json:"success"`
	JobError       *JobError      `json:"job_error,omitempty"`
	Arch           string         `json:"arch"`
	HostOS         string         `json:"host_os"`
	ImageBootMode  string         `json:"image_boot_mode,omitempty"`
	ExportName     string         `json:"export_name"`
	ExportFilename string         `json:"export_filename"`
	KojiFilename   string         `json:"koji_filename,omitempty"`
	Artifacts      []Artifact     `json:"artifacts,omitempty"`
	TargetResults  []TargetResult `json:"target_results,omitempty"`
	Log            string         `json:"log,omitempty"`
}

// TargetResult is the outcome of one upload target.
type TargetResult struct {
	Type string `json:"type"`
	// Options is what the target reported, e.g. {"ami", "region"} for aws
	// (composer's target result options).
	Options     map[string]any `json:"options,omitempty"`
	TargetError *JobError      `json:"target_error,omitempty"`
}

// FinalizeResult is the stored result of a koji-finalize job.
type FinalizeResult struct {
	KojiError string    `json:"koji_error"`
	JobError  *JobError `json:"job_error,omitempty"`
}

// JobInfo is one job of a compose as stored.
type JobInfo struct {
	ID       string
	Kind     string
	Seq      int
	Deps     []string
	Args     json.RawMessage
	Result   json.RawMessage
	Manifest json.RawMessage
	Queued   time.Time
	Started  time.Time
	Finished time.Time
	Canceled bool
}

// Compose status values.
const (
	StatusPending  = "pending"
	StatusBuilding = "building"
	StatusSuccess  = "success"
	StatusFailure  = "failure"
	StatusRunning  = "running"
)

// ComposeStatus is the derived state of a compose.
type ComposeStatus struct {
	ID     string
	Status string
	// Koji is true for Koji composes; KojiBuildID is set once koji-init
	// succeeded.
	Koji        bool
	KojiBuildID uint64
	// KojiReservation is what became of the Koji reservation of a finished
	// Koji compose (see ComposeJobs.KojiState); KojiRefundError is why a
	// refund is still owed.
	KojiReservation string
	KojiRefundError string
	Images          []ImageStatus
}

// ImageStatus is the derived state of one image build.
type ImageStatus struct {
	Status  string
	Error   *JobError
	Uploads []UploadStatus
}

// UploadStatus is the state of one non-Koji upload target.
type UploadStatus struct {
	Type   string
	Status string
	// Options is the target's result once it succeeded (nil before).
	Options map[string]any
}

// ComposeJobs are the jobs of one compose, in dependency order.
type ComposeJobs struct {
	ID       string
	Tenant   string
	Koji     bool
	Created  time.Time
	Init     *JobInfo
	Builds   []*JobInfo
	Finalize *JobInfo
	// KojiState is what became of the Koji reservation: "" while open (or
	// when there was none), KojiImported, KojiRefunded, KojiRefundOwed or
	// KojiRefundStuck.
	KojiState string
	// RefundAttempts counts failed refund calls; RefundError is the last
	// one's error.
	RefundAttempts int
	RefundError    string
}

func decodeError(raw json.RawMessage) *JobError {
	if len(raw) == 0 {
		return nil
	}
	var r struct {
		JobError *JobError `json:"job_error"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return &JobError{ID: ErrIDParsingDynamicArgs, Reason: "unparseable job result"}
	}
	return r.JobError
}

func decodeBuild(raw json.RawMessage) *BuildJobResult {
	var r BuildJobResult
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r)
	}
	return &r
}

func buildFailed(j *JobInfo) bool {
	r := decodeBuild(j.Result)
	return r.JobError != nil || !r.Success
}

// Derive computes a compose's status from its jobs, following
// osbuild-composer's rules: a Koji compose stays pending until koji-finalize
// finishes, even when images already failed; image statuses show failures
// early.
func Derive(c *ComposeJobs) *ComposeStatus {
	st := &ComposeStatus{ID: c.ID, Koji: c.Koji, KojiReservation: c.KojiState, KojiRefundError: c.RefundError}
	if !c.Koji {
		b := c.Builds[0]
		img := ImageStatus{}
		switch {
		case b.Canceled:
			img.Status = StatusFailure
		case b.Started.IsZero():
			img.Status = StatusPending
		case b.Finished.IsZero():
			img.Status = StatusBuilding
		case !buildFailed(b):
			img.Status = StatusSuccess
		default:
			img.Status = StatusFailure
		}
		img.Error = chainError(c, b)
		img.Uploads = uploads(b, decodeError(b.Result))
		st.Images = []ImageStatus{img}
		switch {
		case b.Canceled:
			st.Status = StatusFailure
		case b.Finished.IsZero():
			st.Status = StatusPending
		case !buildFailed(b):
			st.Status = StatusSuccess
		default:
			st.Status = StatusFailure
		}
		return st
	}
	initErr := decodeError(c.Init.Result)
	var ir InitResult
	if len(c.Init.Result) > 0 {
		_ = json.Unmarshal(c.Init.Result, &ir)
	}
	if ir.JobError == nil && !c.Init.Finished.IsZero() {
		st.KojiBuildID = ir.BuildID
	}
	finErr := decodeError(c.Finalize.Result)
	anyBuildFailed := false
	for _, b := range c.Builds {
		img := ImageStatus{}
		r := decodeBuild(b.Result)
		switch {
		case b.Canceled:
			img.Status = StatusFailure
		case initErr != nil:
			img.Status = StatusFailure
		case b.Started.IsZero():
			img.Status = StatusPending
		case b.Finished.IsZero():
			img.Status = StatusBuilding
		case r.JobError != nil || !r.Success:
			img.Status = StatusFailure
		default:
			img.Status = StatusSuccess
		}
		if !b.Finished.IsZero() && (r.JobError != nil || !r.Success) {
			anyBuildFailed = true
		}
		img.Error = chainError(c, b)
		if img.Error == nil && initErr != nil {
			img.Error = &JobError{ID: ErrIDKojiFailedDependency, Reason: "Koji init job failed", Details: []*JobError{initErr}}
		}
		// Composer's quirk, kept: a Koji compose's upload statuses use the
		// finalize job's error.
		img.Uploads = uploads(b, finErr)
		st.Images = append(st.Images, img)
	}
	switch {
	case c.Finalize.Canceled:
		st.Status = StatusFailure
	case c.Finalize.Finished.IsZero():
		st.Status = StatusPending
	case initErr != nil, anyBuildFailed, finErr != nil:
		st.Status = StatusFailure
	default:
		st.Status = StatusSuccess
	}
	return st
}

// chainError returns the job's own error; for a dependency error it adds
// the dependencies' errors as details.
func chainError(c *ComposeJobs, j *JobInfo) *JobError {
	e := decodeError(j.Result)
	if e == nil || !dependencyErrors[e.ID] || e.Details != nil {
		return e
	}
	var details []*JobError
	for _, d := range j.Deps {
		if c.Init != nil && c.Init.ID == d {
			if de := chainError(c, c.Init); de != nil {
				details = append(details, de)
			}
		}
	}
	if len(details) > 0 {
		e.Details = details
	}
	return e
}

func uploads(b *JobInfo, je *JobError) []UploadStatus {
	var img ImageRequest
	var args buildArgs
	if json.Unmarshal(b.Args, &args) == nil {
		img = args.Image
	}
	res := decodeBuild(b.Result)
	var out []UploadStatus
	for i, t := range img.Targets {
		u := UploadStatus{Type: t.Type}
		var tr *TargetResult
		if i < len(res.TargetResults) && res.TargetResults[i].Type == t.Type {
			tr = &res.TargetResults[i]
			u.Options = tr.Options
		}
		switch {
		case je != nil || b.Canceled || tr != nil && tr.TargetError != nil:
			u.Status = StatusFailure
		case b.Started.IsZero():
			u.Status = StatusPending
		case b.Finished.IsZero():
			u.Status = StatusRunning
		default:
			u.Status = StatusSuccess
		}
		out = append(out, u)
	}
	return out
}
