package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeRuns starts `kib serve` as a user would (API only, SQLite in a
// temporary state directory), accepts a compose, serves metrics and shuts
// down cleanly when its context ends.
func TestServeRuns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetOut(pw)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"serve", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--workers", "0"})
	done := make(chan error, 1)
	go func() {
		done <- root.ExecuteContext(ctx)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v (serve: %v)", err, <-done)
	}
	go io.Copy(io.Discard, pr)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "kib serve: listening on "))
	base := "http://" + addr + "/api/image-builder-composer/v2"
	resp, err := http.Post(base+"/compose", "application/json", strings.NewReader(`{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("POST /compose: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `kib_queue_depth{kind="build"} 1`) {
		t.Errorf("metrics lack the queued build:\n%.2000s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve returned %v after shutdown", err)
	}
}
