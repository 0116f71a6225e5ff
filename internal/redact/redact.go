// Package redact removes credentials from text before it leaves the
// process or is stored: Koji session keys in query strings, passwords and
// tokens in URLs, and authorization headers. Errors, log lines and API
// responses pass through it.
package redact

import (
	"context"
	"log/slog"
	"regexp"
)

// Mask replaces a credential.
const Mask = "REDACTED"

var (
	// query parameters and key=value pairs that carry credentials.
	// No word boundary before the name: in JSON, "&" may be escaped as
	// \u0026, which runs into it.
	paramRE = regexp.MustCompile(`(?i)(session-key|session-id|sessionkey|session_key|password|passwd|token|access_token|refresh_token|client_secret|secret|api_key|apikey)=([^&\\\s"'<>;,)]+)`)
	// user:password@ in URLs.
	userinfoRE = regexp.MustCompile(`(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+):[^/\s@]+@`)
	// Authorization headers and bearer tokens.
	authRE = regexp.MustCompile(`(?i)\b(bearer|basic|negotiate)\s+[A-Za-z0-9._~+/=-]{8,}`)
	// Koji's session headers.
	headerRE = regexp.MustCompile(`(?i)\b(Koji-Session-Key|Koji-Session-Id)(:\s*|"\s*:\s*"|=)([^\s",;]+)`)
)

// String returns s with every credential it recognises replaced by Mask.
func String(s string) string {
	s = paramRE.ReplaceAllString(s, "${1}="+Mask)
	s = userinfoRE.ReplaceAllString(s, "${1}:"+Mask+"@")
	s = authRE.ReplaceAllString(s, "${1} "+Mask)
	s = headerRE.ReplaceAllString(s, "${1}${2}"+Mask)
	return s
}

// Error is an error whose message is redacted; Unwrap keeps the cause for
// errors.Is and errors.As.
type Error struct{ Err error }

func (e *Error) Error() string { return String(e.Err.Error()) }

// Unwrap returns the original error.
func (e *Error) Unwrap() error { return e.Err }

// Err wraps err so that its message is redacted; nil stays nil.
func Err(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err}
}

// Handler returns a slog.Handler that redacts the message and every string
// and error attribute before h sees them.
func Handler(h slog.Handler) slog.Handler { return &handler{h} }

type handler struct{ h slog.Handler }

func (r *handler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return &handler{r.h.WithAttrs(red)}
}

func (r *handler) WithGroup(name string) slog.Handler { return &handler{r.h.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = attr(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, String(err.Error()))
		}
		if s, ok := v.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, String(s.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
