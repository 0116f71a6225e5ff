package kojitest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// cgImporter follows the hub's CG_Importer: parse the metadata, check CG
// access, prepare build, buildroots and outputs (all validation, nothing
// changed yet), then import.
type cgImporter struct {
	c        *call
	workdir  string
	token    string
	meta     map[string]any
	cg       string
	brs      []map[string]any
	build    preparedBuild
	outputs  []*output
	reserved *build
}

type preparedBuild struct {
	raw                    map[string]any
	name, version, release string
	start, end             float64
	extra, typeinfo        map[string]any
	taskID                 int
}

type output struct {
	filename string
	path     string
	size     int64
	kind     string
	btype    string
	extra    any
	arch     string
	ctype    int
	checksum string
	subdir   string
	brID     any
	metaOnly bool
}

// legacyBTypes may appear directly in extra instead of extra.typeinfo.
var legacyBTypes = []string{"image", "maven", "win"}

func (c *call) cgImport() (any, error) {
	if err := c.arity(2, 3); err != nil {
		return nil, err
	}
	if _, err := c.user(); err != nil {
		return nil, err
	}
	dir, err := c.str(1, "directory")
	if err != nil {
		return nil, err
	}
	token, _ := c.opt(2, "token").(string)
	im := &cgImporter{c: c, token: token, workdir: filepath.Join(c.h.Dir, "work", filepath.FromSlash(filepath.Clean(dir)))}
	for _, step := range []func() error{im.getMetadata, im.assertCGAccess, im.prepBuild, im.prepBuildroots, im.prepOutputs} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	b, err := im.importBuild()
	if err != nil {
		return nil, err
	}
	c.commit = true
	return c.h.buildInfo(b), nil
}

// getMetadata reads the metadata: a struct, a JSON string, the name of a
// .json file in the upload directory, or nil for its metadata.json.
func (im *cgImporter) getMetadata() error {
	var raw []byte
	var err error
	switch m := im.c.args[0].(type) {
	case map[string]any:
		im.meta = m
	case nil:
		raw, err = os.ReadFile(filepath.Join(im.workdir, "metadata.json"))
	case string:
		if strings.HasSuffix(m, ".json") && !strings.ContainsAny(m, "{\n") {
			raw, err = os.ReadFile(filepath.Join(im.workdir, filepath.Base(m)))
		} else {
			raw = []byte(m)
		}
	default:
		return generic("Invalid metadata value: %T", m)
	}
	if err != nil {
		return pyError("FileNotFoundError", "%v", err)
	}
	if im.meta == nil {
		v, err := koji.DecodeJSON(raw)
		if err != nil {
			return generic("Invalid metadata: %v", err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return generic("Invalid metadata: a JSON object is required, not %T", v)
		}
		im.meta = m
	}
	v, ok := im.meta["metadata_version"]
	if !ok {
		return keyError("metadata_version")
	}
	if n, _ := v.(int64); n != 0 || v == nil {
		return generic("No such metadata version: %v", v)
	}
	return nil
}

// assertCGAccess: every buildroot names the same CG and the caller has
// access to it.
func (im *cgImporter) assertCGAccess() error {
	list, ok := im.meta["buildroots"]
	if !ok {
		return keyError("buildroots")
	}
	brs, _ := list.([]any)
	for _, br := range brs {
		brm, ok := br.(map[string]any)
		if !ok {
			return pyError("TypeError", "buildroot must be a dict")
		}
		cgm, err := getMap(brm, "content_generator")
		if err != nil {
			return err
		}
		name, err := getStr(cgm, "name")
		if err != nil {
			return err
		}
		if im.cg != "" && name != im.cg {
			return generic("Multiple content generators are not supported")
		}
		im.cg = name
		im.brs = append(im.brs, brm)
	}
	if im.cg == "" {
		return generic("No content generator in buildroots")
	}
	return im.c.assertCG(im.cg)
}

// prepBuild checks the build section and the reservation.
func (im *cgImporter) prepBuild() error {
	h := im.c.h
	bm, err := getMap(im.meta, "build")
	if err != nil {
		return err
	}
	pb := preparedBuild{raw: bm}
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &pb.name}, {"version", &pb.version}, {"release", &pb.release}} {
		if *f.dst, err = getStr(bm, f.key); err != nil {
			return err
		}
	}
	if err := checkNVR(pb.name, pb.version, pb.release); err != nil {
		return err
	}
	if pb.start, err = getNum(bm, "start_time"); err != nil {
		return err
	}
	if pb.end, err = getNum(bm, "end_time"); err != nil {
		return err
	}
	if pb.extra, err = getMap(bm, "extra"); err != nil {
		return err
	}
	pb.typeinfo, _ = pb.extra["typeinfo"].(map[string]any)
	if pb.typeinfo == nil {
		pb.typeinfo = map[string]any{}
	}
	for _, legacy := range legacyBTypes {
		if v, ok := pb.extra[legacy]; ok {
			if _, dup := pb.typeinfo[legacy]; dup {
				return generic("Duplicate typeinfo for %s", legacy)
			}
			pb.typeinfo[legacy] = v
		}
	}
	for bt := range pb.typeinfo {
		if !slices.Contains([]string{"rpm", "maven", "win", "image"}, bt) {
			return generic("Unsupported build type: %s", bt)
		}
	}
	if d, _ := bm["draft"].(bool); d {
		return generic("Draft build not supported")
	}
	if v, ok := bm["task_id"]; ok && v != nil {
		if pb.taskID, err = toInt(v, "task_id"); err != nil {
			return err
		}
	}
	im.build = pb
	v, ok := bm["build_id"]
	switch {
	case ok && v != nil:
		id, err := toInt(v, "build_id")
		if err != nil {
			return err
		}
		r := h.builds[id]
		switch {
		case r == nil:
			return errNoSuch("build", id)
		case im.token == "" || r.token != im.token:
			return generic("Token doesn't match build ID %d", id)
		case r.cg != im.cg:
			return generic("Build ID %d is not reserved by this CG", id)
		case r.state != StateBuilding:
			return generic("Build ID %d is not in BUILDING state", id)
		case r.name != pb.name || r.version != pb.version || r.release != pb.release:
			return generic("Build (%d) NVR is different", id)
		case r.taskID != 0 && r.taskID != pb.taskID:
			return generic("Build (%d) task id is different", id)
		}
		im.reserved = r
	case im.token != "":
		return generic("Reservation token given, but no build_id in metadata")
	default:
		if old := h.buildByKey(pb.name, pb.version, pb.release); old != nil && old.state != StateFailed && old.state != StateCanceled {
			return generic("Build already exists: %s", fmtNVR(pb.name, pb.version, pb.release))
		}
	}
	return nil
}

// prepBuildroots checks the required keys and components of each buildroot.
func (im *cgImporter) prepBuildroots() error {
	seen := map[string]bool{}
	for _, brm := range im.brs {
		for _, k := range []string{"id", "host", "content_generator", "container", "tools", "components"} {
			if _, ok := brm[k]; !ok {
				return keyError(k)
			}
		}
		for _, sect := range []struct {
			name string
			keys []string
		}{{"host", []string{"os", "arch"}}, {"content_generator", []string{"version"}}, {"container", []string{"type", "arch"}}} {
			m, err := getMap(brm, sect.name)
			if err != nil {
				return err
			}
			for _, k := range sect.keys {
				if _, err := getStr(m, k); err != nil {
					return err
				}
			}
		}
		comps, ok := brm["components"].([]any)
		if !ok {
			return pyError("TypeError", "components must be a list")
		}
		if err := checkComponents(comps); err != nil {
			return err
		}
		if _, ok := brm["tools"].([]any); !ok {
			return pyError("TypeError", "tools must be a list")
		}
		key := fmt.Sprint(brm["id"])
		if seen[key] {
			return generic("Duplicate buildroot id: %s", key)
		}
		seen[key] = true
	}
	return nil
}

// prepOutputs checks every output against its uploaded file (size and
// checksum) and its type information.
func (im *cgImporter) prepOutputs() error {
	outs, ok := im.meta["output"].([]any)
	if !ok {
		return keyError("output")
	}
	used := map[string]bool{}
	for _, br := range im.brs {
		used[fmt.Sprint(br["id"])] = false
	}
	for _, o := range outs {
		om, ok := o.(map[string]any)
		if !ok {
			return pyError("TypeError", "output must be a dict")
		}
		out, err := im.prepOutput(om, used)
		if err != nil {
			return err
		}
		im.outputs = append(im.outputs, out)
	}
	for id, u := range used {
		if !u {
			return generic("Buildroot id not used in output: %s", id)
		}
	}
	return nil
}

func (im *cgImporter) prepOutput(om map[string]any, used map[string]bool) (*output, error) {
	for _, k := range []string{"buildroot_id", "filename", "filesize", "checksum_type", "checksum", "type"} {
		if _, ok := om[k]; !ok {
			return nil, keyError(k)
		}
	}
	bk := fmt.Sprint(om["buildroot_id"])
	if _, ok := used[bk]; !ok {
		return nil, generic("No such buildroot: %s", bk)
	}
	used[bk] = true
	out := &output{brID: om["buildroot_id"]}
	out.filename, _ = om["filename"].(string)
	out.kind, _ = om["type"].(string)
	relpath, _ := om["relpath"].(string)
	out.subdir, _ = om["subdir"].(string)
	out.metaOnly, _ = om["metadata_only"].(bool)
	size, err := toInt(om["filesize"], "filesize")
	if err != nil {
		return nil, err
	}
	out.path = filepath.Join(im.workdir, filepath.FromSlash(relpath), out.filename)
	st, err := os.Stat(out.path)
	if err != nil {
		return nil, pyError("FileNotFoundError", "[Errno 2] No such file or directory: '%s'", out.path)
	}
	if st.Size() != int64(size) {
		return nil, generic("File size %d for %s (expected %d) doesn't match. Corrupted upload?", st.Size(), out.filename, size)
	}
	out.size = st.Size()
	ctype, _ := om["checksum_type"].(string)
	out.checksum, _ = om["checksum"].(string)
	if out.kind != "log" {
		// Archives record the type in koji.CHECKSUM_TYPES (md5, sha1,
		// sha256), and the upload check refuses sha1.
		ct, ok := checksumTypes[ctype]
		if !ok {
			return nil, keyError(ctype)
		}
		out.ctype = ct
	}
	if err := checkFileDigest(out.path, ctype, out.checksum, out.filename); err != nil {
		return nil, err
	}
	switch out.kind {
	case "log":
		return out, nil
	case "rpm":
		return nil, generic("kojitest does not import rpm outputs: %s", out.filename)
	}
	oe, _ := om["extra"].(map[string]any)
	var found []string
	var info any
	for _, legacy := range legacyBTypes {
		if v, ok := oe[legacy]; ok {
			found, info = append(found, legacy), v
		}
	}
	if ti, ok := oe["typeinfo"].(map[string]any); ok {
		for bt, v := range ti {
			found, info = append(found, bt), v
		}
	}
	switch len(found) {
	case 0:
		return nil, generic("No typeinfo for: %s", out.filename)
	case 1:
	default:
		return nil, generic("Output file has multiple types: %s", out.filename)
	}
	out.btype = found[0]
	if _, ok := im.build.typeinfo[out.btype]; !ok {
		return nil, generic("Output type %s not listed in build types", out.btype)
	}
	if out.btype == "image" {
		m, _ := info.(map[string]any)
		arch, ok := m["arch"].(string)
		if !ok {
			return nil, keyError("arch")
		}
		out.arch = arch
	}
	if comps, ok := om["components"].([]any); ok {
		if err := checkComponents(comps); err != nil {
			return nil, err
		}
	}
	if _, ok := archiveType(out.filename); !ok {
		return nil, generic("unsupported file extension: %s", out.filename)
	}
	out.extra = oe
	return out, nil
}

// checkFileDigest compares the digest of an uploaded file with the claim.
func checkFileDigest(path, ctype, want, filename string) error {
	hs, err := newHash(ctype)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(hs, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(hs.Sum(nil)); got != want {
		return generic("File checksum mismatch for %s: %s != %s", filename, got, want)
	}
	return nil
}

// importBuild creates or completes the build, records buildroots and
// archives, and moves the files into Koji's layout.
func (im *cgImporter) importBuild() (*build, error) {
	h, pb := im.c.h, im.build
	bdir := filepath.Join(h.Dir, "packages", pb.name, pb.version, pb.release)
	if _, err := os.Stat(bdir); err == nil {
		return nil, generic("Destination directory already exists: %s", bdir)
	}
	b := im.reserved
	if b == nil {
		var err error
		if b, err = h.newBuild(pb.name, pb.version, pb.release, pb.raw["epoch"], im.c.sess.user); err != nil {
			return nil, err
		}
		// Without a reservation the metadata's times are kept.
		b.start, b.completion = time.Unix(int64(pb.start), 0), time.Unix(int64(pb.end), 0)
	} else {
		b.completion = h.now()
	}
	b.cg, b.token, b.taskID, b.state = im.cg, "", pb.taskID, StateComplete
	b.source, _ = pb.raw["source"].(string)
	pb.extra["typeinfo"] = pb.typeinfo
	for _, legacy := range legacyBTypes {
		delete(pb.extra, legacy)
	}
	b.extra = pb.extra
	brIndex := map[string]int{}
	for _, brm := range im.brs {
		h.buildroots = append(h.buildroots, brm)
		brIndex[fmt.Sprint(brm["id"])] = len(h.buildroots)
	}
	for _, out := range im.outputs {
		var dest string
		switch {
		case out.kind == "log":
			dest = filepath.Join(bdir, "data", "logs", filepath.FromSlash(out.subdir), out.filename)
		case out.btype == "image":
			dest = filepath.Join(bdir, "images", out.filename)
		default:
			dest = filepath.Join(bdir, "files", out.btype, filepath.FromSlash(out.subdir), out.filename)
		}
		if out.kind != "log" {
			b.hasArchives = true
			h.archives = append(h.archives, &archive{
				id: len(h.archives) + 1, buildID: b.id, buildroot: brIndex[fmt.Sprint(out.brID)],
				filename: out.filename, size: out.size, checksum: out.checksum, ctype: out.ctype,
				btype: out.btype, typeName: typeName(out.filename), arch: out.arch,
				extra: out.extra, metaOnly: out.metaOnly,
			})
			if out.metaOnly {
				continue
			}
		}
		if err := moveLeavingSymlink(out.path, dest); err != nil {
			os.RemoveAll(bdir)
			return nil, generic("Error importing archive file, %v", err)
		}
	}
	raw, _ := json.MarshalIndent(im.meta, "", "  ")
	if err := os.WriteFile(filepath.Join(bdir, "metadata.json"), raw, 0o644); err != nil {
		return nil, err
	}
	logdir := filepath.Join(bdir, "data", "logs")
	if err := os.MkdirAll(logdir, 0o755); err != nil {
		return nil, err
	}
	msg := "Build " + fmtNVR(pb.name, pb.version, pb.release) + " imported by kojitest\n"
	if err := os.WriteFile(filepath.Join(logdir, "cg_import.log"), []byte(msg), 0o644); err != nil {
		return nil, err
	}
	return b, nil
}
