package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/jobs"
)

// Remote runs builds that a kib serve hands out over the worker API.
type Remote struct {
	// Server is the base URL of the kib serve, e.g. https://kib.example:8080.
	Server string
	// HTTP is the client to use (TLS, client certificates); default
	// http.DefaultClient.
	HTTP *http.Client
	// Arch is the architecture this worker builds.
	Arch string
	// Builder does the builds. Required.
	Builder jobs.Builder
	// WorkDir holds a job's artifacts until they are uploaded.
	WorkDir string
	// Token, if set, is sent as a bearer token: the worker's JWT, whose
	// audience the server's --worker-audience names.
	Token string
	// Heartbeat is the interval of heartbeats. Default 15s.
	Heartbeat time.Duration
	// Log receives the worker's log; nil discards.
	Log *slog.Logger
	// Artifacts is how the worker reaches the artifact store (endpoint,
	// credentials) when the server names one for a job; the bucket and
	// place come from the server. Zero: the AWS SDK's defaults.
	Artifacts artifacts.Config
}

func (w *Remote) defaults() {
	if w.HTTP == nil {
		w.HTTP = http.DefaultClient
	}
	if w.Heartbeat <= 0 {
		w.Heartbeat = 15 * time.Second
	}
	if w.Log == nil {
		w.Log = slog.New(slog.DiscardHandler)
	}
}

// Run takes and runs jobs until ctx ends. Errors talking to the server are
// logged and retried after a pause.
func (w *Remote) Run(ctx context.Context) error {
	w.defaults()
	for ctx.Err() == nil {
		ran, err := w.RunOne(ctx)
		if err != nil && ctx.Err() == nil {
			w.Log.Warn("worker API", "err", err)
			select {
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
			}
		}
		_ = ran
	}
	return nil
}

func (w *Remote) call(ctx context.Context, method, path string, body io.Reader, ct string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.Server+path, body)
	if err != nil {
		return 0, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	resp, err := w.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decoding response: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// RunOne asks for one job and runs it; it reports whether there was one.
func (w *Remote) RunOne(ctx context.Context) (bool, error) {
	w.defaults()
	var job JobResponse
	status, err := w.call(ctx, "POST", BasePath+"/jobs", jsonBody(RequestJob{Types: []string{jobs.KindBuild}, Arch: w.Arch}), "application/json", &job)
	if err != nil || status == http.StatusNoContent {
		return false, err
	}
	if job.Args == nil {
		return true, errors.New("job without args")
	}
	log := w.Log.With("job", job.ID)
	log.Info("job taken", "image_type", job.Args.Image.ImageType, "arch", job.Args.Image.Arch)
	dir, err := os.MkdirTemp(w.WorkDir, "job-")
	if err != nil {
		return true, err
	}
	defer os.RemoveAll(dir)

	jctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-jctx.Done():
				return
			case <-t.C:
				var st struct {
					Canceled bool `json:"canceled"`
				}
				status, err := w.call(jctx, "GET", job.Location, nil, "", &st)
				switch {
				case status == http.StatusNotFound || st.Canceled:
					// The server has given the job up (its compose
					// failed or was deleted): stop building.
					log.Info("the server canceled the job; stopping", "status", status)
					cancel()
					return
				case err != nil && jctx.Err() == nil:
					log.Warn("heartbeat", "err", err)
				}
			}
		}
	}()
	args := *job.Args
	args.OutputDir = dir
	res, berr := w.Builder.Build(jctx, &args)
	result := &Result{}
	if berr != nil {
		result.Error = berr.Error()
	} else {
		result.Manifest, result.Log = res.Manifest, res.Log
		if job.ArtifactStore != "" {
			// Put straight into the artifact store; a failure fails the
			// build, with the store's message.
			arts, err := w.store(jctx, log, job.ArtifactStore, res.Artifacts)
			if err != nil && ctx.Err() == nil {
				result.Error = err.Error()
			}
			result.Artifacts = arts
			res.Artifacts = nil
		}
		for _, a := range res.Artifacts {
			f, err := os.Open(a.Path)
			if err != nil {
				cancel()
				wg.Wait()
				return true, err
			}
			_, err = w.call(jctx, "PUT", job.ArtifactLocation+url.PathEscape(filepath.Base(a.Name)), f, "application/octet-stream", nil)
			f.Close()
			if err != nil {
				cancel()
				wg.Wait()
				return true, fmt.Errorf("uploading %s: %w", a.Name, err)
			}
			a.Path = ""
			result.Artifacts = append(result.Artifacts, a)
		}
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	_, err = w.call(ctx, "PATCH", job.Location, jsonBody(UpdateJob{Result: result}), "application/json", nil)
	log.Info("job finished", "failed", berr != nil)
	return true, err
}

// store puts a build's artifacts into the artifact store at dir (the
// server's s3://bucket/prefix/jobs/<job>/<attempt>/) and returns them as
// the result reports them.
func (w *Remote) store(ctx context.Context, log *slog.Logger, dir string, arts []jobs.Artifact) ([]jobs.Artifact, error) {
	loc, err := artifacts.ParseURL(dir)
	if err != nil {
		return nil, fmt.Errorf("the server's artifact store %q: %w", dir, err)
	}
	st, err := artifacts.New(ctx, loc, w.Artifacts)
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: %w", dir, err)
	}
	var out []jobs.Artifact
	for _, a := range arts {
		name := filepath.Base(a.Name)
		start := time.Now()
		if err := st.Put(ctx, loc.URL(loc.Prefix+name), a.Path, a.SHA256, a.Size); err != nil {
			return nil, fmt.Errorf("storing artifact %s in the artifact store: %w", name, err)
		}
		log.Info("artifact stored", "name", name, "size", a.Size, "seconds", time.Since(start).Seconds())
		a.Path = ""
		out = append(out, a)
	}
	return out, nil
}
