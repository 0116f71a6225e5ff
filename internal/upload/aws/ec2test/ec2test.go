// Package ec2test is a test server of the EC2 control plane kib's aws
// target drives: the Query API (POST form, Action=..., XML responses in
// EC2's 2016-11-15 namespace, <Response><Errors> error documents) for
// ImportSnapshot, DescribeImportSnapshotTasks, CreateTags, RegisterImage,
// DescribeImages, ModifySnapshotAttribute and ModifyImageAttribute. Import
// tasks and images move through their states asynchronously, one step per
// Describe call, and faults can be injected per action. EC2 cannot run on
// loopback; everything else in the tests (S3) is a real server.
package ec2test

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Fault is an error an action returns, Times times (0: always).
type Fault struct {
	Status  int
	Code    string
	Message string
	Times   int
}

// Snapshot is an imported snapshot.
type Snapshot struct {
	ID, Name, Bucket, Key, Format string
	Size                          int64
	CreateVolumeUsers             []string
}

// Image is a registered AMI.
type Image struct {
	ID, Name, Arch, BootMode, SnapshotID, RootDevice, State string
	LaunchUsers                                             []string
	polls                                                   int
}

type task struct {
	id, desc, bucket, key, format, snapshot, status, message string
	polls                                                    int
}

// Server is the test server; configure the exported fields before use.
type Server struct {
	// AccessKeyID is the only key accepted; other keys get AuthFailure.
	AccessKeyID string
	// Object reports the size of an S3 object, for ImportSnapshot to
	// check the source as EC2 does (the tests point it at the real S3
	// server); an error fails the task with EC2's ClientError message.
	Object func(bucket, key string) (int64, error)
	// Steps is how many Describe calls an import task or image stays in
	// its pending states. Default 2.
	Steps int

	mu        sync.Mutex
	n         int
	faults    map[string]*Fault
	tasks     map[string]*task
	snapshots map[string]*Snapshot
	images    map[string]*Image
	calls     []string
}

// Fail makes action return f.
func (s *Server) Fail(action string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults == nil {
		s.faults = map[string]*Fault{}
	}
	s.faults[action] = &f
}

// Calls returns the actions called so far, in order.
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Image returns a registered image by id.
func (s *Server) Image(id string) (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.images[id]
	if !ok {
		return Image{}, false
	}
	return *im, true
}

// Snapshot returns a snapshot by id.
func (s *Server) Snapshot(id string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	return *sn, true
}

const ns = "http://ec2.amazonaws.com/doc/2016-11-15/"

var credRE = regexp.MustCompile(`Credential=([^/,\s]+)/`)

type apiError struct {
	status        int
	code, message string
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, &apiError{400, "InvalidRequest", "The request received was invalid."})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, &apiError{400, "InvalidRequest", "The request received was invalid."})
		return
	}
	f := r.PostForm
	action := f.Get("Action")
	if m := credRE.FindStringSubmatch(r.Header.Get("Authorization")); m == nil || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeError(w, &apiError{401, "AuthFailure", "AWS was not able to validate the provided access credentials"})
		return
	} else if m[1] != s.AccessKeyID {
		writeError(w, &apiError{401, "AuthFailure", "AWS was not able to validate the provided access credentials"})
		return
	}
	if f.Get("Version") != "2016-11-15" {
		writeError(w, &apiError{400, "InvalidParameterValue", "Invalid API version " + f.Get("Version")})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, action)
	if fl := s.faults[action]; fl != nil {
		if fl.Times >= 0 {
			if fl.Times == 1 {
				delete(s.faults, action)
			} else if fl.Times > 1 {
				fl.Times--
			}
			st := fl.Status
			if st == 0 {
				st = 400
			}
			writeError(w, &apiError{st, fl.Code, fl.Message})
			return
		}
	}
	var body string
	var err *apiError
	switch action {
	case "ImportSnapshot":
		body, err = s.importSnapshot(f)
	case "DescribeImportSnapshotTasks":
		body, err = s.describeTasks(f)
	case "CreateTags":
		body, err = s.createTags(f)
	case "RegisterImage":
		body, err = s.registerImage(f)
	case "DescribeImages":
		body, err = s.describeImages(f)
	case "ModifySnapshotAttribute":
		body, err = s.modifySnapshot(f)
	case "ModifyImageAttribute":
		body, err = s.modifyImage(f)
	default:
		err = &apiError{400, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", action)}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<%sResponse xmlns="%s"><requestId>%s</requestId>%s</%sResponse>`,
		action, ns, s.id("req"), body, action)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		esc(e.code), esc(e.message), "00000000-0000-0000-0000-000000000000")
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *Server) id(prefix string) string {
	s.n++
	return fmt.Sprintf("%s-%017x", prefix, 0x0abc0000000000+s.n)
}

func (s *Server) steps() int {
	if s.Steps > 0 {
		return s.Steps
	}
	return 2
}

func missing(name string) *apiError {
	return &apiError{400, "MissingParameter", fmt.Sprintf("The request must contain the parameter %s", name)}
}

// list returns the values of prefix.1, prefix.2, ...
func list(f map[string][]string, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func get(f map[string][]string, k string) string {
	if v := f[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Server) importSnapshot(f map[string][]string) (string, *apiError) {
	bucket, key := get(f, "DiskContainer.UserBucket.S3Bucket"), get(f, "DiskContainer.UserBucket.S3Key")
	format := strings.ToUpper(get(f, "DiskContainer.Format"))
	if bucket == "" || key == "" {
		return "", missing("DiskContainer.UserBucket")
	}
	if !slices.Contains([]string{"RAW", "VHD", "VMDK"}, format) {
		return "", &apiError{400, "InvalidParameter", fmt.Sprintf("Invalid value '%s' for DiskContainer.Format. Supported formats are VMDK, VHD, RAW", get(f, "DiskContainer.Format"))}
	}
	t := &task{id: s.id("import-snap"), desc: get(f, "Description"), bucket: bucket, key: key, format: format, status: "active", message: "pending"}
	if s.tasks == nil {
		s.tasks = map[string]*task{}
	}
	s.tasks[t.id] = t
	return fmt.Sprintf(`<description>%s</description><importTaskId>%s</importTaskId>%s`, esc(t.desc), t.id, s.detail(t)), nil
}

func (s *Server) detail(t *task) string {
	snap := ""
	if t.snapshot != "" {
		snap = "<snapshotId>" + t.snapshot + "</snapshotId>"
	}
	msg := ""
	if t.message != "" {
		msg = "<statusMessage>" + esc(t.message) + "</statusMessage>"
	}
	return fmt.Sprintf(`<snapshotTaskDetail><description>%s</description><format>%s</format>%s<status>%s</status>%s<userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail>`,
		esc(t.desc), t.format, snap, t.status, msg, esc(t.bucket), esc(t.key))
}

// advance moves a task one step: pending → validating → converting → done.
func (s *Server) advance(t *task) {
	if t.status != "active" {
		return
	}
	t.polls++
	switch {
	case t.polls == 1:
		t.message = "validating"
		if s.Object != nil {
			size, err := s.Object(t.bucket, t.key)
			if err != nil {
				t.status, t.message = "deleted", fmt.Sprintf("ClientError: Unable to access the S3 object s3://%s/%s: %v", t.bucket, t.key, err)
				return
			}
			if size == 0 {
				t.status, t.message = "deleted", "ClientError: Disk validation failed [Invalid disk size 0]"
				return
			}
		}
	case t.polls < s.steps():
		t.message = "converting"
	default:
		if s.snapshots == nil {
			s.snapshots = map[string]*Snapshot{}
		}
		sn := &Snapshot{ID: s.id("snap"), Bucket: t.bucket, Key: t.key, Format: t.format}
		if s.Object != nil {
			sn.Size, _ = s.Object(t.bucket, t.key)
		}
		s.snapshots[sn.ID] = sn
		t.status, t.message, t.snapshot = "completed", "", sn.ID
	}
}

func (s *Server) describeTasks(f map[string][]string) (string, *apiError) {
	ids := list(f, "ImportTaskId")
	var b strings.Builder
	b.WriteString("<importSnapshotTaskSet>")
	for _, id := range ids {
		t, ok := s.tasks[id]
		if !ok {
			return "", &apiError{400, "InvalidConversionTaskId.Malformed", fmt.Sprintf("The import task id '%s' is malformed or does not exist.", id)}
		}
		s.advance(t)
		fmt.Fprintf(&b, `<item><description>%s</description><importTaskId>%s</importTaskId>%s</item>`, esc(t.desc), t.id, s.detail(t))
	}
	b.WriteString("</importSnapshotTaskSet>")
	return b.String(), nil
}

func (s *Server) createTags(f map[string][]string) (string, *apiError) {
	res := list(f, "ResourceId")
	if len(res) == 0 {
		return "", missing("ResourceId")
	}
	name := ""
	for i := 1; ; i++ {
		k, ok := f["Tag."+strconv.Itoa(i)+".Key"]
		if !ok {
			break
		}
		if k[0] == "Name" {
			name = get(f, "Tag."+strconv.Itoa(i)+".Value")
		}
	}
	for _, r := range res {
		if sn, ok := s.snapshots[r]; ok {
			if name != "" {
				sn.Name = name
			}
			continue
		}
		if _, ok := s.images[r]; ok {
			continue
		}
		return "", &apiError{400, "InvalidID", fmt.Sprintf("The ID '%s' is not valid", r)}
	}
	return "<return>true</return>", nil
}

func (s *Server) registerImage(f map[string][]string) (string, *apiError) {
	name := get(f, "Name")
	if name == "" {
		return "", missing("Name")
	}
	for _, im := range s.images {
		if im.Name == name {
			return "", &apiError{400, "InvalidAMIName.Duplicate", fmt.Sprintf("AMI name %s is already in use by AMI %s", name, im.ID)}
		}
	}
	snap := get(f, "BlockDeviceMapping.1.Ebs.SnapshotId")
	if _, ok := s.snapshots[snap]; !ok {
		return "", &apiError{400, "InvalidSnapshot.NotFound", fmt.Sprintf("The snapshot '%s' does not exist.", snap)}
	}
	bm := get(f, "BootMode")
	if bm != "" && !slices.Contains([]string{"legacy-bios", "uefi", "uefi-preferred"}, bm) {
		return "", &apiError{400, "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter bootMode is invalid.", bm)}
	}
	arch := get(f, "Architecture")
	if !slices.Contains([]string{"x86_64", "arm64", "i386"}, arch) {
		return "", &apiError{400, "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter architecture is invalid.", arch)}
	}
	root := get(f, "RootDeviceName")
	if root != get(f, "BlockDeviceMapping.1.DeviceName") {
		return "", &apiError{400, "InvalidBlockDeviceMapping", "The root device name must be in the block device mapping."}
	}
	if s.images == nil {
		s.images = map[string]*Image{}
	}
	im := &Image{ID: s.id("ami"), Name: name, Arch: arch, BootMode: bm, SnapshotID: snap, RootDevice: root, State: "pending"}
	s.images[im.ID] = im
	return "<imageId>" + im.ID + "</imageId>", nil
}

func (s *Server) describeImages(f map[string][]string) (string, *apiError) {
	var b strings.Builder
	b.WriteString("<imagesSet>")
	for _, id := range list(f, "ImageId") {
		im, ok := s.images[id]
		if !ok {
			return "", &apiError{400, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", id)}
		}
		if im.State == "pending" {
			im.polls++
			if im.polls >= s.steps() {
				im.State = "available"
			}
		}
		fmt.Fprintf(&b, `<item><imageId>%s</imageId><name>%s</name><imageState>%s</imageState><architecture>%s</architecture><bootMode>%s</bootMode><rootDeviceName>%s</rootDeviceName><rootDeviceType>ebs</rootDeviceType><virtualizationType>hvm</virtualizationType><isPublic>false</isPublic></item>`,
			im.ID, esc(im.Name), im.State, im.Arch, im.BootMode, im.RootDevice)
	}
	b.WriteString("</imagesSet>")
	return b.String(), nil
}

func (s *Server) modifySnapshot(f map[string][]string) (string, *apiError) {
	sn, ok := s.snapshots[get(f, "SnapshotId")]
	if !ok {
		return "", &apiError{400, "InvalidSnapshot.NotFound", fmt.Sprintf("The snapshot '%s' does not exist.", get(f, "SnapshotId"))}
	}
	var ids []string
	for i := 1; ; i++ {
		v, ok := f["CreateVolumePermission.Add."+strconv.Itoa(i)+".UserId"]
		if !ok {
			break
		}
		ids = append(ids, v[0])
	}
	if len(ids) == 0 {
		return "", missing("CreateVolumePermission")
	}
	for _, id := range ids {
		if len(id) != 12 {
			return "", &apiError{400, "InvalidUserID.Malformed", fmt.Sprintf("User ID '%s' is not valid", id)}
		}
	}
	sn.CreateVolumeUsers = append(sn.CreateVolumeUsers, ids...)
	return "<return>true</return>", nil
}

func (s *Server) modifyImage(f map[string][]string) (string, *apiError) {
	im, ok := s.images[get(f, "ImageId")]
	if !ok {
		return "", &apiError{400, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", get(f, "ImageId"))}
	}
	var ids []string
	for i := 1; ; i++ {
		v, ok := f["LaunchPermission.Add."+strconv.Itoa(i)+".UserId"]
		if !ok {
			break
		}
		ids = append(ids, v[0])
	}
	if len(ids) == 0 {
		return "", missing("LaunchPermission")
	}
	for _, id := range ids {
		if len(id) != 12 {
			return "", &apiError{400, "InvalidUserID.Malformed", fmt.Sprintf("User ID '%s' is not valid", id)}
		}
	}
	im.LaunchUsers = append(im.LaunchUsers, ids...)
	return "<return>true</return>", nil
}
