package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/jobs"
)

// BasePath is where the worker API is mounted.
const BasePath = "/api/worker/v1"

// Handler serves the worker API for a Dispatcher:
//
//	POST  /jobs                      {"types":["build"],"arch":"x86_64"} → 201 job, or 204 when none came
//	GET   /jobs/{token}              heartbeat; → {"canceled":false}
//	PUT   /jobs/{token}/artifacts/{name}   upload one artifact (unless the job names an
//	                                 artifact_store: then the worker puts it there)
//	PATCH /jobs/{token}              {"result":{...}} finishes the job
type Handler struct {
	// Dispatcher hands out the builds. Required.
	Dispatcher *Dispatcher
	// PollTimeout is how long POST /jobs waits for a job. Default 30s.
	PollTimeout time.Duration
	// Authorize, if set, admits or refuses each request (the service's
	// mTLS allow-list or JWT check).
	Authorize func(r *http.Request) error
	// Log receives request errors; nil discards.
	Log *slog.Logger
	// Artifacts, if set, is the artifact store workers put their
	// artifacts into (kib serve --artifacts) instead of uploading them
	// here; each job names its own place there (artifact_store).
	Artifacts *artifacts.Store
}

// RequestJob is the body of POST /jobs.
type RequestJob struct {
	Types []string `json:"types"`
	Arch  string   `json:"arch"`
}

// JobResponse is a job handed to a worker.
type JobResponse struct {
	ID               string `json:"id"`
	Kind             string `json:"kind"`
	Href             string `json:"href"`
	Type             string `json:"type"`
	Location         string `json:"location"`
	ArtifactLocation string `json:"artifact_location"`
	// ArtifactStore, if set, is where the worker puts the job's artifacts
	// (s3://bucket/prefix/jobs/<job>/<attempt>/ + name) instead of
	// uploading them to ArtifactLocation.
	ArtifactStore string          `json:"artifact_store,omitempty"`
	Args          *jobs.BuildArgs `json:"args"`
}

// Result is what a worker reports when a job ends.
type Result struct {
	Manifest  json.RawMessage `json:"manifest,omitempty"`
	Artifacts []jobs.Artifact `json:"artifacts,omitempty"`
	Log       string          `json:"log,omitempty"`
	// Error is set when the build failed.
	Error string `json:"error,omitempty"`
}

// UpdateJob is the body of PATCH /jobs/{token}.
type UpdateJob struct {
	Result *Result `json:"result"`
}

// apiError is a worker API error, IMAGE-BUILDER-WORKER-<code>.
type apiError struct {
	status, code int
	reason       string
}

func (e *apiError) Error() string { return e.reason }

var (
	errMediaType = &apiError{415, 3, "Only 'application/json' content is supported"}
	errToken     = &apiError{404, 5, "Token not found"}
	errBody      = &apiError{400, 10, "Error decoding the body"}
	errNotFound  = &apiError{404, 11, "Requested resource doesn't exist"}
	errAuth      = &apiError{401, 401, "Account authentication could not be verified"}
	errJobType   = &apiError{400, 15, "Requested job type cannot be dequeued"}
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		var e *apiError
		if !errors.As(err, &e) {
			e = &apiError{500, 10000, "internal error"}
		}
		if h.Log != nil {
			h.Log.Warn("worker API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.status)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": fmt.Sprint(e.code), "kind": "Error", "href": fmt.Sprintf("%s/errors/%d", BasePath, e.code),
			"code": fmt.Sprintf("IMAGE-BUILDER-WORKER-%d", e.code), "reason": e.reason, "message": e.reason,
		})
	}
}

func decodeJSON(r *http.Request, v any) error {
	if r.Header.Get("Content-Type") != "application/json" {
		return errMediaType
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBody, err)
	}
	return nil
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	path, ok := strings.CutPrefix(r.URL.Path, BasePath)
	if !ok {
		return errNotFound
	}
	if h.Authorize != nil {
		if err := h.Authorize(r); err != nil {
			return fmt.Errorf("%w: %v", errAuth, err)
		}
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "jobs" && r.Method == http.MethodPost:
		return h.requestJob(w, r)
	case len(parts) == 2 && parts[0] == "jobs" && r.Method == http.MethodGet:
		if err := h.Dispatcher.heartbeat(parts[1]); err != nil {
			return errToken
		}
		writeJSON(w, 200, map[string]any{"id": parts[1], "kind": "JobStatus", "href": BasePath + "/jobs/" + parts[1], "canceled": false})
		return nil
	case len(parts) == 2 && parts[0] == "jobs" && r.Method == http.MethodPatch:
		return h.updateJob(w, r, parts[1])
	case len(parts) == 4 && parts[0] == "jobs" && parts[2] == "artifacts" && r.Method == http.MethodPut:
		return h.upload(w, r, parts[1], parts[3])
	}
	return errNotFound
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) requestJob(w http.ResponseWriter, r *http.Request) error {
	var req RequestJob
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Arch == "" {
		return fmt.Errorf("%w: arch: required", errBody)
	}
	wantBuild := false
	for _, t := range req.Types {
		if t != jobs.KindBuild {
			return fmt.Errorf("%w: %q", errJobType, t)
		}
		wantBuild = true
	}
	if !wantBuild {
		return fmt.Errorf("%w: types: give [\"build\"]", errJobType)
	}
	timeout := h.PollTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	t, err := h.Dispatcher.take(ctx, req.Arch)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		// The poll timed out: no job came.
		writeJSON(w, http.StatusNoContent, nil)
		return nil
	case err != nil:
		return fmt.Errorf("waiting for a job: %w", err)
	}
	loc := BasePath + "/jobs/" + t.token
	args := *t.args
	args.OutputDir = ""
	if h.Artifacts != nil {
		t.setStoreDir(h.Artifacts.NewDir(t.args.JobID))
	}
	writeJSON(w, http.StatusCreated, JobResponse{
		ID: t.args.JobID, Kind: "RequestJob", Href: BasePath + "/jobs", Type: jobs.KindBuild,
		Location: loc, ArtifactLocation: loc + "/artifacts/", ArtifactStore: t.storeDir(), Args: &args,
	})
	return nil
}

func (h *Handler) upload(w http.ResponseWriter, r *http.Request, token, name string) error {
	t, err := h.Dispatcher.lookup(token)
	if err != nil {
		return errToken
	}
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: artifact name %q", errBody, name)
	}
	f, err := os.Create(filepath.Join(t.args.OutputDir, name))
	if err != nil {
		return err
	}
	// The server hashes what it received; the worker's report is only
	// compared with it (updateJob).
	hash := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, hash), r.Body)
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	t.received(name, hex.EncodeToString(hash.Sum(nil)), n)
	_ = h.Dispatcher.heartbeat(token)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Handler) updateJob(w http.ResponseWriter, r *http.Request, token string) error {
	var u UpdateJob
	if err := decodeJSON(r, &u); err != nil {
		return err
	}
	if u.Result == nil {
		return fmt.Errorf("%w: result: required", errBody)
	}
	t, err := h.Dispatcher.lookup(token)
	if err != nil {
		return errToken
	}
	var res taskResult
	if u.Result.Error != "" {
		res.err = errors.New(u.Result.Error)
	} else {
		br := &jobs.BuildResult{Manifest: u.Result.Manifest, Log: u.Result.Log}
		stored := false
		for _, a := range u.Result.Artifacts {
			p := filepath.Join(t.args.OutputDir, filepath.Base(a.Name))
			got, ok := t.upload(filepath.Base(a.Name))
			if !ok && t.storeDir() != "" {
				stored = true
				continue
			}
			if !ok {
				return fmt.Errorf("%w: artifact %s: not uploaded", errBody, a.Name)
			}
			// The file on disk must still be what was received, and what the
			// worker says it sent.
			sum, size, err := sha256File(p)
			if err != nil || sum != got.sha256 || size != got.size {
				return fmt.Errorf("%w: artifact %s: changed since it was received", errBody, a.Name)
			}
			if a.SHA256 != got.sha256 || a.Size != got.size {
				return fmt.Errorf("%w: artifact %s: the worker reports sha256 %s (%d bytes), the server received %s (%d bytes)", errBody, a.Name, a.SHA256, a.Size, got.sha256, got.size)
			}
			a.SHA256, a.Size, a.Path = got.sha256, got.size, p
			br.Artifacts = append(br.Artifacts, a)
		}
		res.res = br
		if stored {
			arts, err := h.checkStored(r.Context(), t, u.Result.Artifacts)
			if err != nil {
				// The build is done, but its artifacts are not what the
				// worker reports: the build fails, with the reason.
				res = taskResult{err: err}
			} else {
				br.Artifacts = arts
			}
		}
	}
	if err := h.Dispatcher.finish(token, res); err != nil {
		return errToken
	}
	writeJSON(w, 200, map[string]any{"id": token, "kind": "UpdateJobResponse", "href": BasePath + "/jobs/" + token})
	return nil
}

// checkStored returns the job's artifacts as the store holds them: each one
// must be in the job's place in the store with the size and sha256 the
// worker reports (the sha256 recorded with the object when it was put;
// downloads and Koji imports verify the bytes against it). Artifacts the
// worker uploaded here are kept as received.
func (h *Handler) checkStored(ctx context.Context, t *task, reported []jobs.Artifact) ([]jobs.Artifact, error) {
	var out []jobs.Artifact
	for _, a := range reported {
		name := filepath.Base(a.Name)
		if got, ok := t.upload(name); ok {
			a.SHA256, a.Size, a.Path = got.sha256, got.size, filepath.Join(t.args.OutputDir, name)
			out = append(out, a)
			continue
		}
		if name == "" || name == "." || name == "/" || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("artifact name %q: not a file name", a.Name)
		}
		loc := t.storeDir() + name
		info, err := h.Artifacts.Stat(ctx, loc)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: not in the artifact store: %w", a.Name, err)
		}
		if info.Size != a.Size || info.SHA256 != a.SHA256 {
			return nil, fmt.Errorf("artifact %s: the worker reports sha256 %s (%d bytes), the artifact store holds sha256 %q (%d bytes) at %s", a.Name, a.SHA256, a.Size, info.SHA256, info.Size, loc)
		}
		a.Path = loc
		out = append(out, a)
	}
	return out, nil
}
