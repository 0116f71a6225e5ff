package composer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"

	"github.com/kib-project/kib/internal/redact"
)

// Service error codes; numbers, HTTP statuses and reasons are
// osbuild-composer's, so clients that look at them keep working.
const (
	ErrUnauthenticated       = 401
	ErrUnauthorized          = 2
	ErrUnsupportedMediaType  = 3
	ErrUnsupportedDistro     = 4
	ErrUnsupportedArch       = 5
	ErrUnsupportedImageType  = 6
	ErrNoBaseURL             = 7
	ErrInvalidComposeID      = 14
	ErrComposeNotFound       = 15
	ErrInvalidErrorID        = 16
	ErrErrorNotFound         = 17
	ErrInvalidPageParam      = 18
	ErrInvalidSizeParam      = 19
	ErrBodyDecodingError     = 20
	ErrResourceNotFound      = 21
	ErrMethodNotAllowed      = 22
	ErrNotAcceptable         = 23
	ErrUnsupportedImageCount = 25
	ErrInvalidJobType        = 26
	ErrTenantNotFound        = 28
	ErrNoGPGKey              = 29
	ErrValidationError       = 30
	ErrComposeRunning        = 31
	ErrInvalidCustomization  = 35
	ErrInvalidUploadTarget   = 38
	ErrMixedCustomizations   = 39
	ErrInvalidRequest        = 42
	ErrEnqueueingJob         = 1005
	ErrGettingComposeList    = 1021
	ErrArtifactNotFound      = 1022
	ErrDeletingJob           = 1023
	ErrInternal              = 10000
)

type errorInfo struct {
	status int
	reason string
}

var errorTable = map[int]errorInfo{
	ErrUnauthenticated:       {401, "Account authentication could not be verified"},
	ErrUnauthorized:          {403, "Account is unauthorized to perform this action"},
	ErrUnsupportedMediaType:  {415, "Only 'application/json' content is supported"},
	ErrUnsupportedDistro:     {400, "Unsupported distribution"},
	ErrUnsupportedArch:       {400, "Unsupported architecture"},
	ErrUnsupportedImageType:  {400, "Unsupported image type"},
	ErrNoBaseURL:             {400, "Must specify baseurl, mirrorlist, or metalink"},
	ErrInvalidComposeID:      {400, "Invalid format for compose id"},
	ErrComposeNotFound:       {404, "Compose with given id not found"},
	ErrInvalidErrorID:        {400, "Invalid format for error id, it should be an integer as a string"},
	ErrErrorNotFound:         {404, "Error with given id not found"},
	ErrInvalidPageParam:      {400, "Invalid format for page param, it should be an integer as a string"},
	ErrInvalidSizeParam:      {400, "Invalid format for size param, it should be an integer as a string"},
	ErrBodyDecodingError:     {400, "Malformed json, unable to decode body"},
	ErrResourceNotFound:      {404, "Requested resource doesn't exist"},
	ErrMethodNotAllowed:      {405, "Requested method isn't supported for resource"},
	ErrNotAcceptable:         {406, "Only 'application/json' content is supported"},
	ErrUnsupportedImageCount: {400, "Compose request has unsupported number of image builds"},
	ErrInvalidJobType:        {404, "Job with given id has an invalid type"},
	ErrTenantNotFound:        {400, "Tenant not found in JWT claims"},
	ErrNoGPGKey:              {400, "Invalid repository, when check_gpg is set, gpgkey must be specified"},
	ErrValidationError:       {400, "Request could not be validated"},
	ErrComposeRunning:        {400, "Compose is running or has failed"},
	ErrInvalidCustomization:  {400, "Invalid image customization"},
	ErrInvalidUploadTarget:   {400, "Invalid upload target for image type"},
	ErrMixedCustomizations:   {400, "Invalid request, include blueprint or customizations, not both"},
	ErrInvalidRequest:        {400, "Invalid request, see details for more information"},
	ErrEnqueueingJob:         {500, "Failed to enqueue job"},
	ErrGettingComposeList:    {500, "Unable to get list of composes"},
	ErrArtifactNotFound:      {400, "Artifact not found"},
	ErrDeletingJob:           {500, "Unable to delete job"},
	ErrInternal:              {500, "Unspecified internal error"},
}

// Error is an API error: a service code, public details and, for the log
// only, the internal cause.
type Error struct {
	Code    int
	Details any
	Err     error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("IMAGE-BUILDER-COMPOSER-%d: %s", e.Code, errorTable[e.Code].reason)
	if e.Details != nil {
		s += fmt.Sprintf(" (%v)", e.Details)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

func apiErr(code int, details any) *Error { return &Error{Code: code, Details: details} }

func internalErr(code int, err error) *Error { return &Error{Code: code, Err: err} }

// errorBody is the JSON form of an error.
type errorBody struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Href        string `json:"href"`
	Code        string `json:"code"`
	Reason      string `json:"reason"`
	OperationID string `json:"operation_id"`
	Details     any    `json:"details,omitempty"`
}

func newErrorBody(code int, opID string, details any) errorBody {
	return errorBody{
		ID:          strconv.Itoa(code),
		Kind:        "Error",
		Href:        basePath + "/errors/" + strconv.Itoa(code),
		Code:        fmt.Sprintf("IMAGE-BUILDER-COMPOSER-%d", code),
		Reason:      errorTable[code].reason,
		OperationID: opID,
		Details:     details,
	}
}

// writeError is the one place where errors become responses: a known API
// error gets its status and public details; anything else is a 500 whose
// cause is only logged.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, opID string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = internalErr(ErrInternal, err)
	}
	info, ok := errorTable[e.Code]
	if !ok {
		e, info = internalErr(ErrInternal, err), errorTable[ErrInternal]
	}
	level := slog.LevelInfo
	if info.status >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request failed", "operation_id", opID, "method", r.Method, "path", r.URL.Path, "code", e.Code, "status", info.status, "err", err)
	if r.Method == http.MethodHead {
		w.WriteHeader(info.status)
		return
	}
	writeJSON(w, info.status, newErrorBody(e.Code, opID, e.Details))
}

// writeJSON writes v with credentials redacted: job errors may quote URLs
// that carried a Koji session or a password.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, redact.String(buf.String()))
}

func errorCodes() []int {
	codes := make([]int, 0, len(errorTable))
	for c := range errorTable {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	return codes
}
