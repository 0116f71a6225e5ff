package composer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// ValidateResponse checks a response of this server against the OpenAPI
// document: status listed for the operation and body matching its schema.
func (s *Server) ValidateResponse(ctx context.Context, r *http.Request, status int, header http.Header, body []byte) error {
	path, ok := strings.CutPrefix(r.URL.Path, basePath)
	if !ok {
		return nil
	}
	for i := range s.routes {
		rt := &s.routes[i]
		params, ok := matchPath(rt.path, path)
		if !ok || rt.method != r.Method {
			continue
		}
		item := s.doc.Paths.Find(rt.path)
		op := item.GetOperation(rt.method)
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{
				Request: r, PathParams: params,
				Route: &routers.Route{Spec: s.doc, Path: rt.path, PathItem: item, Method: rt.method, Operation: op},
			},
			Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
			return fmt.Errorf("%s %s → %d: %w", r.Method, r.URL.Path, status, err)
		}
		return nil
	}
	return nil
}
