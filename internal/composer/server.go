// Package composer is kib's compose API: an osbuild-composer Cloud API v2
// compatible HTTP handler that validates requests against kib's OpenAPI
// document, maps them to job graphs and reports their status. It never runs
// builds.
package composer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/kib-project/kib/api"
	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/resolve"
)

const basePath = "/api/image-builder-composer/v2"

// Queue is what the API needs from the job queue; *jobs.Queue is one.
type Queue interface {
	Submit(ctx context.Context, c *jobs.Compose) (string, error)
	Get(ctx context.Context, tenant, id string) (*jobs.ComposeJobs, error)
	List(ctx context.Context, tenant string) ([]*jobs.ComposeJobs, error)
	Delete(ctx context.Context, tenant, id string) error
	ArtifactDir(jobID string) string
}

// Authenticator finds the tenant of a request. It returns an *Error (e.g.
// code 401 or 28) when the request may not proceed.
type Authenticator interface {
	Tenant(r *http.Request) (string, error)
}

// Config configures the handler.
type Config struct {
	// Queue stores and runs composes. Required.
	Queue Queue
	// Distros is the distro catalog requests are checked against. Required.
	Distros *distro.Catalog
	// Auth finds the tenant; nil means everyone is the tenant "".
	Auth Authenticator
	// Log receives request logs; default discards.
	Log *slog.Logger
	// UploadTargets reports whether the service can upload to a cloud
	// target (aws, aws.s3, ...); composes naming another are refused at
	// POST with error 38. Nil: only "local".
	UploadTargets func(target string) bool
	// KojiServer is the Koji hub this service imports into; a compose
	// naming another hub is refused at POST, and without one every Koji
	// compose is.
	KojiServer string
	// FileRepositories are the directories file: repositories may name; a
	// file: repository elsewhere, or any when empty, is refused.
	FileRepositories []string
	// Artifacts, if set, is the artifact store builds keep their
	// artifacts in (kib serve --artifacts); downloads stream from it.
	Artifacts *artifacts.Store
}

// Server is the compose API handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	doc      *openapi3.T
	specJSON []byte
	routes   []route
	// resolver checks repositories the way the builds will resolve them.
	resolver *resolve.Resolver
}

type route struct {
	method   string
	path     string // template under basePath, e.g. /composes/{id}
	public   bool
	validate bool
	handle   func(w http.ResponseWriter, r *http.Request, rc *reqContext) error
}

// reqContext carries what the edge found out about a request.
type reqContext struct {
	opID   string
	tenant string
	params map[string]string
	body   []byte
}

// New returns the compose API handler, mounted at
// /api/image-builder-composer/v2.
func New(cfg Config) (*Server, error) {
	if cfg.Queue == nil || cfg.Distros == nil {
		return nil, errors.New("composer: Queue and Distros are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.ComposeV2)
	if err != nil {
		return nil, fmt.Errorf("composer: loading OpenAPI document: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("composer: OpenAPI document: %w", err)
	}
	specJSON, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("composer: OpenAPI document to JSON: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, doc: doc, specJSON: specJSON, resolver: &resolve.Resolver{FileRoots: cfg.FileRepositories}}
	s.routes = []route{
		{method: "GET", path: "/openapi", public: true, handle: s.getOpenapi},
		{method: "GET", path: "/errors", public: true, validate: true, handle: s.getErrorList},
		{method: "GET", path: "/errors/{id}", validate: true, handle: s.getError},
		{method: "GET", path: "/distributions", validate: true, handle: s.getDistributions},
		{method: "POST", path: "/compose", validate: true, handle: s.postCompose},
		{method: "GET", path: "/composes/", validate: true, handle: s.getComposeList},
		{method: "GET", path: "/composes/{id}", validate: true, handle: s.getComposeStatus},
		{method: "DELETE", path: "/composes/{id}", validate: true, handle: s.deleteCompose},
		{method: "GET", path: "/composes/{id}/logs", validate: true, handle: s.getComposeLogs},
		{method: "GET", path: "/composes/{id}/manifests", validate: true, handle: s.getComposeManifests},
		{method: "GET", path: "/composes/{id}/metadata", validate: true, handle: s.getComposeMetadata},
		{method: "GET", path: "/composes/{id}/sboms", validate: true, handle: s.getComposeSBOMs},
		{method: "GET", path: "/composes/{id}/download", validate: true, handle: s.getComposeDownload},
	}
	return s, nil
}

func newOperationID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func matchPath(tmpl, path string) (map[string]string, bool) {
	ts, ps := strings.Split(tmpl, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return nil, false
	}
	params := map[string]string{}
	for i, t := range ts {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if ps[i] == "" {
				return nil, false
			}
			params[t[1:len(t)-1]] = ps[i]
		} else if t != ps[i] {
			return nil, false
		}
	}
	return params, true
}

// ServeHTTP routes, authenticates, validates and dispatches a request, and
// turns any error into composer's error body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := &reqContext{opID: newOperationID()}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	sw.Header().Set("X-Operation-Id", rc.opID)
	if err := s.serve(sw, r, rc); err != nil {
		writeError(sw, r, s.log, rc.opID, err)
	}
	s.log.Info("request", "operation_id", rc.opID, "method", r.Method, "path", r.URL.Path,
		"status", sw.status, "duration_ms", time.Since(start).Milliseconds(), "tenant", rc.tenant)
}

// statusWriter remembers the response status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rc *reqContext) error {
	path, ok := strings.CutPrefix(r.URL.Path, basePath)
	if !ok {
		return apiErr(ErrResourceNotFound, nil)
	}
	if path == "" {
		path = "/"
	}
	var rt *route
	pathMatched := false
	for i := range s.routes {
		p, ok := matchPath(s.routes[i].path, path)
		if !ok && s.routes[i].path == "/openapi" && path == "/openapi/" {
			p, ok = map[string]string{}, true
		}
		if !ok {
			continue
		}
		pathMatched = true
		if s.routes[i].method == r.Method || (r.Method == http.MethodHead && s.routes[i].method == http.MethodGet) {
			rt, rc.params = &s.routes[i], p
			break
		}
	}
	switch {
	case rt == nil && pathMatched:
		return apiErr(ErrMethodNotAllowed, nil)
	case rt == nil:
		return apiErr(ErrResourceNotFound, nil)
	}
	if !rt.public && s.cfg.Auth != nil {
		tenant, err := s.cfg.Auth.Tenant(r)
		if err != nil {
			return err
		}
		rc.tenant = tenant
	}
	if r.Method == http.MethodPost {
		if ct := r.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
			return apiErr(ErrUnsupportedMediaType, nil)
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
		if err != nil {
			return &Error{Code: ErrBodyDecodingError, Details: "reading body: " + err.Error(), Err: err}
		}
		if !json.Valid(body) {
			return apiErr(ErrBodyDecodingError, "request body is not valid JSON")
		}
		rc.body = body
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if rt.validate {
		if err := s.validateRequest(r, rt, rc); err != nil {
			return err
		}
	}
	return rt.handle(w, r, rc)
}

func (s *Server) validateRequest(r *http.Request, rt *route, rc *reqContext) error {
	item := s.doc.Paths.Find(rt.path)
	if item == nil {
		return internalErr(ErrInternal, fmt.Errorf("route %s missing from the OpenAPI document", rt.path))
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	op := item.GetOperation(method)
	if op == nil {
		return internalErr(ErrInternal, fmt.Errorf("operation %s %s missing from the OpenAPI document", method, rt.path))
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: rc.params,
		Route:      &routers.Route{Spec: s.doc, Path: rt.path, PathItem: item, Method: method, Operation: op},
		Options: &openapi3filter.Options{
			AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
			SkipSettingDefaults: true,
			MultiError:          false,
		},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		return &Error{Code: ErrValidationError, Details: validationDetails(err), Err: err}
	}
	if rc.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(rc.body))
	}
	return nil
}

// validationDetails turns a kin-openapi error into a message that names the
// field and the rule.
func validationDetails(err error) string {
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		var se *openapi3.SchemaError
		if errors.As(re.Err, &se) {
			field := strings.Join(se.JSONPointer(), ".")
			if field == "" {
				field = "(body)"
			}
			return fmt.Sprintf("%s: %s", field, se.Reason)
		}
		if re.Parameter != nil {
			return fmt.Sprintf("parameter %s: %v", re.Parameter.Name, re.Err)
		}
		return re.Error()
	}
	return err.Error()
}

func (s *Server) getOpenapi(w http.ResponseWriter, _ *http.Request, _ *reqContext) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(s.specJSON)
	return err
}
