package fetch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("served"))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("local"), 0o644)
	for _, tt := range []struct {
		url, want, err string
	}{
		{srv.URL + "/ok", "served", ""},
		{"file://" + file, "local", ""},
		{srv.URL + "/missing", "", "404"},
		{"file:///nonexistent/kib", "", "no such file"},
	} {
		var b bytes.Buffer
		err := Get(context.Background(), nil, tt.url, &b)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Get(%s) = %v, want an error with %q", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil || b.String() != tt.want {
			t.Errorf("Get(%s) = %q, %v; want %q", tt.url, b.String(), err, tt.want)
		}
	}
}
