package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const key = "1-Ohvx8Qe7aZsK2mP"

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{`Post "https://koji.example.org/kojihub?session-id=1&session-key=` + key + `&callnum=3": connection refused`,
			`Post "https://koji.example.org/kojihub?session-id=REDACTED&session-key=REDACTED&callnum=3": connection refused`},
		{"https://kib:s3cret@koji.example.org/kojihub", "https://kib:REDACTED@koji.example.org/kojihub"},
		{"Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig", "Authorization: Bearer REDACTED"},
		{"Koji-Session-Key: " + key, "Koji-Session-Key: REDACTED"},
		{"login?password=hunter2&user=kib", "login?password=REDACTED&user=kib"},
		{"nothing secret here: build 42 failed", "nothing secret here: build 42 failed"},
	}
	for _, tt := range tests {
		if got := String(tt.in); got != tt.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestErrKeepsTheCause(t *testing.T) {
	cause := errors.New("boom")
	err := Err(fmt.Errorf("calling https://h/kojihub?session-key=%s: %w", key, cause))
	if strings.Contains(err.Error(), key) || !errors.Is(err, cause) {
		t.Errorf("Err = %q, Is(cause) = %v", err, errors.Is(err, cause))
	}
	if Err(nil) != nil {
		t.Error("Err(nil) is not nil")
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil))).With("server", "https://u:pw@koji.example.org")
	log.Error("call failed: session-key="+key, "err", fmt.Errorf("Post \"https://h/kojihub?session-key=%s\": refused", key),
		slog.Group("req", "url", "https://h/kojihub?session-key="+key))
	out := buf.String()
	if strings.Contains(out, key) || strings.Contains(out, ":pw@") || strings.Count(out, Mask) != 4 {
		t.Errorf("log line leaks a credential: %s", out)
	}
}

func TestStringInJSON(t *testing.T) {
	in := `{"details":"Post \"https://h/kojihub?session-id=1\u0026session-key=` + key + `\": refused"}`
	if got := String(in); strings.Contains(got, key) || strings.Contains(got, "session-id=1") {
		t.Errorf("String(%s) = %s", in, got)
	}
}
