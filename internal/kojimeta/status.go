package kojimeta

// ComposeStatus is the compose-status.json document attached to an image
// build task.
type ComposeStatus struct {
	ImageStatuses []ImageStatus `json:"image_statuses"`
	KojiBuildID   *int64        `json:"koji_build_id"`
	KojiTaskID    *int64        `json:"koji_task_id"`
	Status        string        `json:"status"`
}

// ImageStatus is the status of one image.
type ImageStatus struct {
	Status       string        `json:"status"`
	UploadStatus *UploadStatus `json:"upload_status,omitempty"`
}

// UploadStatus is the status of an image's cloud upload.
type UploadStatus struct {
	Options map[string]any `json:"options"`
	Status  string         `json:"status"`
	Type    string         `json:"type"`
}

// Compose statuses as composer reports them.
const (
	StatusSuccess  = "success"
	StatusFailure  = "failure"
	StatusPending  = "pending"
	StatusBuilding = "building"
)

// NewComposeStatus summarises image statuses: the compose succeeded if every
// image did, failed if any failed, and is pending otherwise.
func NewComposeStatus(buildID, taskID int64, images []ImageStatus) ComposeStatus {
	cs := ComposeStatus{ImageStatuses: images, Status: StatusSuccess}
	if cs.ImageStatuses == nil {
		cs.ImageStatuses = []ImageStatus{}
	}
	if buildID != 0 {
		cs.KojiBuildID = &buildID
	}
	if taskID != 0 {
		cs.KojiTaskID = &taskID
	}
	for _, im := range images {
		switch im.Status {
		case StatusFailure:
			cs.Status = StatusFailure
			return cs
		case StatusSuccess:
		default:
			cs.Status = StatusPending
		}
	}
	return cs
}
