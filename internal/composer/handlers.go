package composer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/manifest"
)

type objectRef struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Href string `json:"href"`
}

func (s *Server) postCompose(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	req, err := decodeComposeRequest(rc.body)
	if err != nil {
		return err
	}
	c, err := s.toCompose(req, rc.tenant, rc.body)
	if err != nil {
		return err
	}
	id, err := s.cfg.Queue.Submit(r.Context(), c)
	if err != nil {
		return internalErr(ErrEnqueueingJob, err)
	}
	s.log.Info("compose accepted", "operation_id", rc.opID, "compose", id, "koji", c.Koji != nil, "images", len(c.Images))
	writeJSON(w, http.StatusCreated, objectRef{ID: id, Kind: "ComposeId", Href: basePath + "/compose"})
	return nil
}

// compose loads the compose named by the {id} parameter for the caller's
// tenant.
func (s *Server) compose(r *http.Request, rc *reqContext) (*jobs.ComposeJobs, error) {
	id := rc.params["id"]
	if _, err := uuid.Parse(id); err != nil {
		return nil, &Error{Code: ErrInvalidComposeID, Details: "id: not a UUID: " + id}
	}
	c, err := s.cfg.Queue.Get(r.Context(), rc.tenant, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, apiErr(ErrComposeNotFound, nil)
	}
	if err != nil {
		return nil, internalErr(ErrInternal, err)
	}
	return c, nil
}

type composeStatusBody struct {
	objectRef
	Status        string            `json:"status"`
	ImageStatus   imageStatusBody   `json:"image_status"`
	ImageStatuses []imageStatusBody `json:"image_statuses,omitempty"`
	KojiStatus    *kojiStatusBody   `json:"koji_status,omitempty"`
}

type imageStatusBody struct {
	Status         string             `json:"status"`
	Error          *jobs.JobError     `json:"error,omitempty"`
	UploadStatus   *uploadStatusBody  `json:"upload_status,omitempty"`
	UploadStatuses []uploadStatusBody `json:"upload_statuses,omitempty"`
}

type uploadStatusBody struct {
	Status  string `json:"status"`
	Type    string `json:"type"`
	Options any    `json:"options"`
}

type kojiStatusBody struct {
	BuildID uint64 `json:"build_id,omitempty"`
	// Reservation is what became of the Koji reservation once the compose
	// ended: imported, refunded, refund-owed (retried) or refund-stuck.
	// kib's addition to composer's KojiStatus.
	Reservation string `json:"reservation,omitempty"`
	// RefundError is why a refund is still owed.
	RefundError string `json:"refund_error,omitempty"`
}

func statusBody(c *jobs.ComposeJobs) composeStatusBody {
	st := jobs.Derive(c)
	b := composeStatusBody{
		objectRef: objectRef{ID: c.ID, Kind: "ComposeStatus", Href: basePath + "/composes/" + c.ID},
		Status:    st.Status,
	}
	for _, img := range st.Images {
		ib := imageStatusBody{Status: img.Status, Error: img.Error}
		for _, u := range img.Uploads {
			us := uploadStatusBody{Status: u.Status, Type: u.Type}
			if u.Options != nil {
				us.Options = u.Options
			}
			ib.UploadStatuses = append(ib.UploadStatuses, us)
		}
		if len(ib.UploadStatuses) > 0 {
			first := ib.UploadStatuses[0]
			ib.UploadStatus = &first
		}
		b.ImageStatuses = append(b.ImageStatuses, ib)
	}
	b.ImageStatus = b.ImageStatuses[0]
	if st.Koji {
		b.KojiStatus = &kojiStatusBody{BuildID: st.KojiBuildID, Reservation: st.KojiReservation, RefundError: st.KojiRefundError}
	} else {
		// image_statuses is only set for Koji composes.
		b.ImageStatuses = nil
	}
	return b
}

func (s *Server) getComposeStatus(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, statusBody(c))
	return nil
}

func (s *Server) getComposeList(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	list, err := s.cfg.Queue.List(r.Context(), rc.tenant)
	if err != nil {
		return internalErr(ErrGettingComposeList, err)
	}
	items := make([]composeStatusBody, 0, len(list))
	for _, c := range list {
		items = append(items, statusBody(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "ComposeList", "page": 0, "size": len(items), "total": len(items), "items": items})
	return nil
}

func (s *Server) deleteCompose(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	switch err := s.cfg.Queue.Delete(r.Context(), rc.tenant, c.ID); {
	case errors.Is(err, jobs.ErrRunning):
		return apiErr(ErrComposeRunning, "the compose has not finished")
	case errors.Is(err, jobs.ErrNotFound):
		return apiErr(ErrComposeNotFound, nil)
	case err != nil:
		return internalErr(ErrDeletingJob, err)
	}
	writeJSON(w, http.StatusOK, objectRef{ID: c.ID, Kind: "ComposeDeleteStatus", Href: basePath + "/composes/" + c.ID})
	return nil
}

func rawOrEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

func (s *Server) getComposeLogs(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	builds := make([]json.RawMessage, 0, len(c.Builds))
	for _, b := range c.Builds {
		builds = append(builds, rawOrEmpty(b.Result))
	}
	body := map[string]any{
		"id": c.ID, "kind": "ComposeLogs", "href": basePath + "/composes/" + c.ID + "/logs",
		"image_builds": builds,
	}
	if c.Koji {
		// The reservation token stays on the server: koji-osbuild uploads
		// this answer to the Koji task, where anyone can read it.
		body["koji"] = map[string]json.RawMessage{"init": rawOrEmpty(jobs.PublicInitResult(c.Init.Result)), "import": rawOrEmpty(c.Finalize.Result)}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) getComposeManifests(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	mans := make([]json.RawMessage, 0, len(c.Builds))
	for _, b := range c.Builds {
		m := b.Manifest
		if len(m) == 0 {
			m = json.RawMessage("null")
		}
		mans = append(mans, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.ID, "kind": "ComposeManifests", "href": basePath + "/composes/" + c.ID + "/manifests", "manifests": mans})
	return nil
}

func (s *Server) getComposeMetadata(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	if c.Koji {
		return apiErr(ErrInvalidJobType, "metadata is for composes without koji")
	}
	ref := map[string]any{"id": c.ID, "kind": "ComposeMetadata", "href": basePath + "/composes/" + c.ID + "/metadata"}
	if jobs.Derive(c).Status != jobs.StatusSuccess {
		writeJSON(w, http.StatusOK, ref)
		return nil
	}
	b := c.Builds[0]
	pkgs, err := packagesFromManifest(b.Manifest)
	if err != nil {
		return internalErr(ErrInternal, fmt.Errorf("compose %s: %w", c.ID, err))
	}
	ref["packages"] = pkgs
	writeJSON(w, http.StatusOK, ref)
	return nil
}

// packagesFromManifest lists the pinned packages of a kib manifest in
// composer's PackageMetadata shape, with type "deb".
func packagesFromManifest(man json.RawMessage) ([]map[string]any, error) {
	var m manifest.Manifest
	if err := json.Unmarshal(man, &m); err != nil {
		return nil, fmt.Errorf("reading the build's manifest: %w", err)
	}
	out := []map[string]any{}
	for _, p := range m.Sources.Debs {
		version, release := p.Version, ""
		if i := strings.LastIndex(version, "-"); i > 0 {
			version, release = version[:i], version[i+1:]
		}
		out = append(out, map[string]any{"type": "deb", "name": p.Name, "version": version, "release": release, "arch": p.Arch, "sigmd5": "", "checksum": "sha256:" + p.SHA256})
	}
	return out, nil
}

// buildResult reads a finished build job's result.
func buildResult(b *jobs.JobInfo) (*jobs.BuildJobResult, error) {
	var res jobs.BuildJobResult
	if err := json.Unmarshal(b.Result, &res); err != nil {
		return nil, fmt.Errorf("job %s: reading its result: %w", b.ID, err)
	}
	return &res, nil
}

func (s *Server) getComposeSBOMs(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	items := make([][]map[string]any, 0, len(c.Builds))
	for _, b := range c.Builds {
		list := []map[string]any{}
		if len(b.Result) == 0 {
			items = append(items, list)
			continue
		}
		res, err := buildResult(b)
		if err != nil {
			return internalErr(ErrInternal, err)
		}
		for _, a := range res.Artifacts {
			if a.Kind != "sbom" {
				continue
			}
			data, err := s.readArtifact(r.Context(), b, a)
			if err != nil {
				return internalErr(ErrArtifactNotFound, err)
			}
			list = append(list, map[string]any{"sbom": json.RawMessage(data), "sbom_type": "spdx", "pipeline_name": "image-os", "pipeline_purpose": "image"})
		}
		items = append(items, list)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.ID, "kind": "ComposeSBOMs", "href": basePath + "/composes/" + c.ID + "/sboms", "items": items})
	return nil
}

func (s *Server) getComposeDownload(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	c, err := s.compose(r, rc)
	if err != nil {
		return err
	}
	if jobs.Derive(c).Status != jobs.StatusSuccess {
		return apiErr(ErrArtifactNotFound, "the compose has not succeeded")
	}
	b := c.Builds[0]
	res, err := buildResult(b)
	if err != nil {
		return internalErr(ErrInternal, err)
	}
	for _, a := range res.Artifacts {
		if a.Kind == "image" {
			f, err := s.openArtifact(r.Context(), b, a)
			if err != nil {
				return internalErr(ErrArtifactNotFound, err)
			}
			defer f.Close()
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Disposition", "attachment; filename="+strconv.Quote(a.Name))
			// A whole download is checked against the recorded sha256 on
			// the way: the last bytes are withheld (the transfer breaks)
			// rather than handing out a whole but wrong image.
			http.ServeContent(w, r, a.Name, f.ModTime(), artifacts.NewVerifier(f, f.Size(), a.SHA256))
			return nil
		}
	}
	return apiErr(ErrArtifactNotFound, "the compose has no image")
}

func (s *Server) getDistributions(w http.ResponseWriter, _ *http.Request, _ *reqContext) error {
	out := map[string]map[string][]map[string]any{}
	for _, name := range s.cfg.Distros.Names() {
		def, err := s.cfg.Distros.Get(name)
		if err != nil {
			return internalErr(ErrInternal, err)
		}
		arches := map[string][]map[string]any{}
		for arch := range def.Architectures {
			var repos []map[string]any
			for _, r := range def.Repositories {
				repos = append(repos, map[string]any{"baseurl": r.Fallback, "suite": r.Suite, "components": r.Components, "rhsm": false})
			}
			arches[arch] = repos
		}
		out[name] = arches
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getError(w http.ResponseWriter, _ *http.Request, rc *reqContext) error {
	code, err := strconv.Atoi(rc.params["id"])
	if err != nil {
		return apiErr(ErrInvalidErrorID, nil)
	}
	if _, ok := errorTable[code]; !ok {
		return apiErr(ErrErrorNotFound, nil)
	}
	writeJSON(w, http.StatusOK, newErrorBody(code, rc.opID, nil))
	return nil
}

func (s *Server) getErrorList(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	page, size := 0, 100
	var err error
	if p := r.URL.Query().Get("page"); p != "" {
		if page, err = strconv.Atoi(p); err != nil || page < 0 {
			return apiErr(ErrInvalidPageParam, nil)
		}
	}
	if sz := r.URL.Query().Get("size"); sz != "" {
		if size, err = strconv.Atoi(sz); err != nil || size < 0 {
			return apiErr(ErrInvalidSizeParam, nil)
		}
	}
	codes := errorCodes()
	items := []errorBody{}
	for i := page * size; i < (page+1)*size && i < len(codes); i++ {
		items = append(items, newErrorBody(codes[i], rc.opID, nil))
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "ErrorList", "page": page, "size": len(items), "total": len(codes), "items": items})
	return nil
}

// openArtifact opens a build's artifact: from the artifact store when it is
// kept there, else from the build's directory on this machine. An object
// whose size or recorded sha256 differ from the build's record is refused.
func (s *Server) openArtifact(ctx context.Context, b *jobs.JobInfo, a jobs.Artifact) (artifacts.Reader, error) {
	if !s.cfg.Artifacts.Owns(a.Path) {
		return s.cfg.Artifacts.Open(ctx, filepath.Join(s.cfg.Queue.ArtifactDir(b.ID), filepath.Base(a.Name)))
	}
	f, err := s.cfg.Artifacts.Open(ctx, a.Path)
	if err != nil {
		return nil, err
	}
	o, _ := f.(*artifacts.Object)
	if f.Size() != a.Size || o != nil && o.SHA256() != a.SHA256 {
		f.Close()
		return nil, fmt.Errorf("%s: %w: the store holds %d bytes (sha256 %q), the build recorded %d bytes (sha256 %s)", a.Path, artifacts.ErrChecksum, f.Size(), o.SHA256(), a.Size, a.SHA256)
	}
	return f, nil
}

// readArtifact reads a small artifact (an SBOM) whole, checking its sha256.
func (s *Server) readArtifact(ctx context.Context, b *jobs.JobInfo, a jobs.Artifact) ([]byte, error) {
	f, err := s.openArtifact(ctx, b, a)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(artifacts.NewVerifier(f, f.Size(), a.SHA256))
}
