package kojitest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// Build states (koji.BUILD_STATES).
const (
	StateBuilding = 0
	StateComplete = 1
	StateDeleted  = 2
	StateFailed   = 3
	StateCanceled = 4
)

type build struct {
	id                     int
	name, version, release string
	epoch                  any
	state                  int
	owner                  *User
	cg                     string
	taskID                 int
	extra                  map[string]any
	source                 string
	start, completion      time.Time
	token                  string
	hasArchives            bool
	// image is a row in image_builds: made by host.initImageBuild.
	image bool
}

type archive struct {
	id        int
	buildID   int
	buildroot int
	filename  string
	size      int64
	checksum  string
	ctype     int
	btype     string
	typeName  string
	arch      string
	extra     any
	metaOnly  bool
}

// archiveTypes maps Koji's default archive type extensions to type names
// (schemas/schema.sql), those an image build can produce.
var archiveTypes = map[string]string{
	"iso": "iso", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vmdk": "vmdk", "ova": "ova",
	"vdi": "vdi", "vhd": "vhd", "vhdx": "vhdx", "box": "vagrant-libvirt", "raw.xz": "raw-xz",
	"raw.gz": "raw-gz", "qcow2.gz": "qcow2-compressed", "qcow2.xz": "qcow2-compressed",
	"iso.gz": "iso-compressed", "iso.xz": "iso-compressed", "vhd.gz": "vhd-compressed",
	"vhd.xz": "vhd-compressed", "vhdx.gz": "vhdx-compressed", "vhdx.xz": "vhdx-compressed",
	"vmdk.gz": "vmdk-compressed", "vmdk.xz": "vmdk-compressed", "tar": "tar", "tar.gz": "tar",
	"tar.bz2": "tar", "tar.xz": "tar", "tgz": "tar", "zip": "zip", "json": "json",
	"yaml": "yaml", "yml": "yaml", "txt": "txt", "ks": "ks", "cfg": "cfg", "xml": "xml",
	"liveimg.squashfs": "liveimg-squashfs", "squashfs": "squashfs", "squashfs.gz": "squashfs-compressed",
	"squashfs.xz": "squashfs-compressed", "erofs": "erofs", "erofs.gz": "erofs-compressed",
	"erofs.xz": "erofs-compressed", "wsl": "wsl", "vmlinuz": "kernel-image", "vmlinuz.gz": "kernel-image",
	"vmlinuz.xz": "kernel-image", "img": "initramfs", "sha256": "checksum",
	"changes": "changes", "packages": "packages", "verified": "verified",
}

// archiveType picks the type by the longest matching extension.
func archiveType(filename string) (string, bool) {
	best := ""
	for ext := range archiveTypes {
		if strings.HasSuffix(filename, "."+ext) && len(ext) > len(best) {
			best = ext
		}
	}
	if best == "" {
		return "", false
	}
	return archiveTypes[best], true
}

var checksumTypes = map[string]int{"md5": 0, "sha1": 1, "sha256": 2}

var nvrPart = regexp.MustCompile(`^[^-]+$`)

// checkNVR is koji.check_NVR(strict=True) for name, version, release.
func checkNVR(name, version, release string) error {
	if name == "" {
		return generic("Invalid name: empty")
	}
	if !nvrPart.MatchString(version) {
		return generic("Invalid version: %q", version)
	}
	if !nvrPart.MatchString(release) {
		return generic("Invalid release: %q", release)
	}
	return nil
}

func (c *call) assertCG(cg string) error {
	if c.sess == nil {
		return authError("Not logged-in")
	}
	users, ok := c.h.cgs[cg]
	if !ok {
		return generic("No such entry in table content_generator: %s", cg)
	}
	if !users[c.sess.user.ID] {
		return authError("Content generator access required (%s)", cg)
	}
	return nil
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Hub) buildByKey(name, version, release string) *build {
	if id, ok := h.buildByNVR[fmtNVR(name, version, release)]; ok {
		return h.builds[id]
	}
	return nil
}

// newBuild is new_build(strict=False): it recycles a FAILED or CANCELED
// build without content and refuses any other existing NVR.
func (h *Hub) newBuild(name, version, release string, epoch any, owner *User) (*build, error) {
	if old := h.buildByKey(name, version, release); old != nil {
		if old.token != "" {
			return nil, generic("Build is already reserved")
		}
		if (old.state == StateFailed || old.state == StateCanceled) && !old.hasArchives {
			old.state, old.owner, old.epoch = StateBuilding, owner, epoch
			old.start, old.completion = h.now(), time.Time{}
			old.extra, old.taskID, old.cg = nil, 0, ""
			return old, nil
		}
		return nil, generic("Build already exists (id=%d, state=%s): %s", old.id, stateName(old.state), fmtNVR(name, version, release))
	}
	b := &build{id: h.nextID, name: name, version: version, release: release, epoch: epoch, state: StateBuilding, owner: owner, start: h.now()}
	h.nextID++
	h.builds[b.id] = b
	h.buildByNVR[fmtNVR(name, version, release)] = b.id
	return b, nil
}

func stateName(s int) string {
	return [...]string{"BUILDING", "COMPLETE", "DELETED", "FAILED", "CANCELED"}[s]
}

func (c *call) cgInitBuild() (any, error) {
	if err := c.arity(2, 2); err != nil {
		return nil, err
	}
	cg, err := c.str(0, "cg")
	if err != nil {
		return nil, err
	}
	if err := c.assertCG(cg); err != nil {
		return nil, err
	}
	data, ok := c.args[1].(map[string]any)
	if !ok {
		return nil, paramError("data must be a struct")
	}
	name, _ := data["name"].(string)
	version, _ := data["version"].(string)
	release, _ := data["release"].(string)
	if err := checkNVR(name, version, release); err != nil {
		return nil, err
	}
	b, err := c.h.newBuild(name, version, release, data["epoch"], c.sess.user)
	if err != nil {
		return nil, err
	}
	b.cg = cg
	b.token = newToken()
	c.commit = true
	return map[string]any{"build_id": b.id, "token": b.token}, nil
}

func (c *call) cgRefundBuild() (any, error) {
	if err := c.arity(3, 4); err != nil {
		return nil, err
	}
	cg, err := c.str(0, "cg")
	if err != nil {
		return nil, err
	}
	if err := c.assertCG(cg); err != nil {
		return nil, err
	}
	id, err := c.integer(1, "build_id")
	if err != nil {
		return nil, err
	}
	token, err := c.str(2, "token")
	if err != nil {
		return nil, err
	}
	state := StateFailed
	if v := c.opt(3, "state"); v != nil {
		if state, err = toInt(v, "state"); err != nil {
			return nil, err
		}
	}
	if state != StateFailed && state != StateCanceled {
		return nil, generic("Only FAILED/CANCELED build states are allowed")
	}
	b := c.h.builds[id]
	if b == nil {
		return nil, errNoSuch("build", id)
	}
	if b.token == "" || b.token != token {
		return nil, generic("Token doesn't match build ID %d", id)
	}
	if b.cg != cg {
		return nil, generic("Build ID %d is not reserved by this CG", id)
	}
	if b.state != StateBuilding {
		return nil, generic("Build ID %d is not in BUILDING state", id)
	}
	b.state, b.completion, b.token = state, c.h.now(), ""
	c.commit = true
	return nil, nil
}

// cancelBuild is the hub's cancelBuild(buildID, strict=False): the owner (or
// an admin) cancels a BUILDING build, which also drops a CG reservation, so
// CGInitBuild can recycle the build. It returns whether the build was
// canceled.
func (c *call) cancelBuild() (any, error) {
	if err := c.arity(1, 2); err != nil {
		return nil, err
	}
	u, err := c.user()
	if err != nil {
		return nil, err
	}
	b := c.h.findBuild(c.args[0])
	if b == nil {
		if strict, _ := c.opt(1, "strict").(bool); strict {
			return nil, errNoSuch("build", c.args[0])
		}
		return false, nil
	}
	if b.owner != u && !c.hasPerm("admin") {
		return nil, notAllowed("Cannot cancel build, not owner")
	}
	if b.state != StateBuilding {
		return false, nil
	}
	b.state, b.completion, b.token = StateCanceled, c.h.now(), ""
	c.commit = true
	return true, nil
}

// keyError is the fault a real hub gives for a missing metadata key.
func keyError(key string) error { return pyError("KeyError", "'%s'", key) }

func getMap(m map[string]any, key string) (map[string]any, error) {
	v, ok := m[key]
	if !ok {
		return nil, keyError(key)
	}
	mm, ok := v.(map[string]any)
	if !ok {
		return nil, pyError("TypeError", "%s must be a dict, not %T", key, v)
	}
	return mm, nil
}

func getStr(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", keyError(key)
	}
	s, ok := v.(string)
	if !ok {
		return "", pyError("TypeError", "%s must be a string, not %T", key, v)
	}
	return s, nil
}

func getNum(m map[string]any, key string) (float64, error) {
	v, ok := m[key]
	if !ok {
		return 0, keyError(key)
	}
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case json.Number:
		return x.Float64()
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err == nil {
			return f, nil
		}
	}
	return 0, pyError("ValueError", "could not convert %s to float: %v", key, v)
}

// typeName is the archive type of a file already known to have one.
func typeName(filename string) string {
	t, _ := archiveType(filename)
	return t
}

func checkComponents(comps []any) error {
	for _, co := range comps {
		cm, ok := co.(map[string]any)
		if !ok {
			return pyError("TypeError", "component must be a dict")
		}
		t, _ := cm["type"].(string)
		var keys []string
		switch t {
		case "rpm":
			keys = []string{"name", "version", "release", "epoch", "arch", "sigmd5", "signature"}
			if _, ok := cm["location"]; ok {
				return generic("rpm component with location is not supported")
			}
		case "file":
			keys = []string{"filename", "filesize", "checksum", "checksum_type"}
		case "kojifile":
			keys = []string{"archive_id", "nvr", "filename"}
		default:
			return generic("No such component type: %s", t)
		}
		for _, k := range keys {
			if _, ok := cm[k]; !ok {
				return keyError(k)
			}
		}
	}
	return nil
}

// moveLeavingSymlink moves src to dest and leaves a relative symlink at src,
// as the hub does for imported files.
func moveLeavingSymlink(src, dest string) error {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("%s already exists", dest)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	if err := os.Rename(src, dest); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(src), dest)
	if err != nil {
		return err
	}
	return os.Symlink(rel, src)
}

func tsOrNil(t time.Time) (any, any) {
	if t.IsZero() {
		return nil, nil
	}
	return t.UTC().Format("2006-01-02 15:04:05.000000+00:00"), float64(t.UnixNano()) / 1e9
}

func (h *Hub) buildInfo(b *build) map[string]any {
	st, sts := tsOrNil(b.start)
	ct, cts := tsOrNil(b.completion)
	var cgID, cgName, task, extra any
	if b.cg != "" {
		cgName = b.cg
		cgID = h.cgIDs[b.cg]
	}
	if b.taskID != 0 {
		task = b.taskID
	}
	if b.extra != nil {
		extra = b.extra
	}
	var owner any
	var ownerName any
	if b.owner != nil {
		owner, ownerName = b.owner.ID, b.owner.Name
	}
	return map[string]any{
		"id": b.id, "build_id": b.id, "name": b.name, "package_name": b.name, "version": b.version,
		"release": b.release, "epoch": b.epoch, "nvr": fmtNVR(b.name, b.version, b.release),
		"state": b.state, "owner_id": owner, "owner_name": ownerName, "cg_id": cgID, "cg_name": cgName,
		"task_id": task, "extra": extra, "source": nilIfEmpty(b.source), "draft": false,
		"start_time": st, "start_ts": sts, "completion_time": ct, "completion_ts": cts,
		"volume_id": 0, "volume_name": "DEFAULT",
	}
}

// findBuild resolves a build id, "n-v-r" string or {name, version, release}.
func (h *Hub) findBuild(v any) *build {
	switch x := v.(type) {
	case int64:
		return h.builds[int(x)]
	case string:
		if id, ok := h.buildByNVR[x]; ok {
			return h.builds[id]
		}
		if n, err := strconv.Atoi(x); err == nil {
			return h.builds[n]
		}
	case map[string]any:
		if id, ok := x["id"]; ok {
			return h.findBuild(id)
		}
		n, _ := x["name"].(string)
		ver, _ := x["version"].(string)
		r, _ := x["release"].(string)
		return h.buildByKey(n, ver, r)
	}
	return nil
}

func (c *call) getBuild() (any, error) {
	if err := c.arity(1, 2); err != nil {
		return nil, err
	}
	b := c.h.findBuild(c.args[0])
	if b == nil {
		if strict, _ := c.opt(1, "strict").(bool); strict {
			return nil, errNoSuch("build", c.args[0])
		}
		return nil, nil
	}
	return c.h.buildInfo(b), nil
}

func (c *call) listArchives() (any, error) {
	var buildID int
	if v := c.opt(0, "buildID"); v != nil {
		b := c.h.findBuild(v)
		if b == nil {
			return []any{}, nil
		}
		buildID = b.id
	}
	typ, _ := c.opt(4, "type").(string)
	fname, _ := c.opt(5, "filename").(string)
	out := []any{}
	for _, a := range c.h.archives {
		if (buildID != 0 && a.buildID != buildID) || (typ != "" && a.btype != typ) || (fname != "" && a.filename != fname) {
			continue
		}
		m := map[string]any{
			"id": a.id, "build_id": a.buildID, "buildroot_id": a.buildroot, "filename": a.filename,
			"size": a.size, "checksum": a.checksum, "checksum_type": a.ctype, "btype": a.btype,
			"type_name": a.typeName, "extra": a.extra, "metadata_only": a.metaOnly, "compression_type": nil,
		}
		if typ == "image" {
			m["arch"] = a.arch
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *call) getBuildLogs() (any, error) {
	if err := c.arity(1, 1); err != nil {
		return nil, err
	}
	b := c.h.findBuild(c.args[0])
	if b == nil {
		return nil, errNoSuch("build", c.args[0])
	}
	rel := filepath.Join("packages", b.name, b.version, b.release, "data", "logs")
	root := filepath.Join(c.h.Dir, rel)
	out := []any{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 || d.IsDir() {
			return nil
		}
		sub, _ := filepath.Rel(root, filepath.Dir(p))
		out = append(out, map[string]any{"name": d.Name(), "dir": sub, "path": filepath.ToSlash(filepath.Join(rel, sub, d.Name()))})
		return nil
	})
	return out, err
}

func (c *call) getNextRelease() (any, error) {
	if err := c.arity(1, 2); err != nil {
		return nil, err
	}
	bi, ok := c.args[0].(map[string]any)
	if !ok {
		return nil, paramError("build_info must be a struct")
	}
	name, _ := bi["name"].(string)
	version, _ := bi["version"].(string)
	incr := 1
	if v := c.opt(1, "incr"); v != nil {
		var err error
		if incr, err = toInt(v, "incr"); err != nil {
			return nil, err
		}
	}
	var last *build
	for _, b := range c.h.builds {
		if b.name == name && b.version == version && (b.state == StateBuilding || b.state == StateComplete || b.state == StateDeleted) {
			if last == nil || b.id > last.id {
				last = b
			}
		}
	}
	if last == nil {
		return "1", nil
	}
	return nextRelease(last.release, incr)
}

func nextRelease(rel string, incr int) (string, error) {
	if n, err := strconv.Atoi(rel); err == nil {
		return strconv.Itoa(n + incr), nil
	}
	parts := strings.Split(rel, ".")
	if len(parts) == 2 {
		if n, err := strconv.Atoi(parts[0]); err == nil {
			return strconv.Itoa(n+incr) + "." + parts[1], nil
		}
	}
	if len(parts) == 3 {
		if n, err := strconv.Atoi(parts[2]); err == nil {
			return parts[0] + "." + parts[1] + "." + strconv.Itoa(n+incr), nil
		}
	}
	return "", &koji.Fault{Code: koji.CodeBuild, String: "Unable to increment release value: " + rel}
}

// SetBuildState changes a build's state as an administrator's direct
// database change would (the reservation is dropped), for tests of clients
// that meet a build in an unexpected state.
func (h *Hub) SetBuildState(id int64, state int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.builds[int(id)]; b != nil {
		b.state, b.token = state, ""
	}
}
