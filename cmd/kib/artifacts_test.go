package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/upload/s3test"
)

// TestServeArtifactsFlag: --artifacts is checked before anything starts
// (the error names the flag and the rule), the [artifacts] table is strict,
// and a kib serve given a reachable store ([serve] artifacts in kib.toml,
// endpoint and credentials in [artifacts]) starts, while one whose bucket
// is missing stops at start saying so.
func TestServeArtifactsFlag(t *testing.T) {
	dir := t.TempDir()
	refused := []struct {
		name string
		args []string
		want string
	}{
		{"a directory", []string{"serve", "--artifacts", "/srv/artifacts"}, `--artifacts "/srv/artifacts": must be s3://BUCKET[/PREFIX]`},
		{"an http URL", []string{"serve", "--artifacts", "http://minio:9000/kib"}, `--artifacts "http://minio:9000/kib": must be s3://BUCKET[/PREFIX]`},
		{"a bad bucket", []string{"serve", "--artifacts", "s3://Kib_Artifacts/x"}, `--artifacts "s3://Kib_Artifacts/x": bucket "Kib_Artifacts": S3 bucket names are`},
		{"a bad prefix", []string{"serve", "--artifacts", "s3://kib-artifacts/a/../b"}, `prefix "a/../b": empty, "." and ".." path segments are not allowed`},
		{"from kib.toml", []string{"serve", "--config", writeConf(t, "[serve]\nartifacts = \"s3://x\"\n")}, `--artifacts "s3://x": bucket "x"`},
		{"unknown [artifacts] key", []string{"serve", "--config", writeConf(t, "[serve]\nartifacts = \"s3://kib-artifacts\"\n[artifacts]\nendpont = \"http://127.0.0.1:9\"\n")}, "artifacts.endpont: unknown setting"},
		{"half a credential", []string{"serve", "--config", writeConf(t, "[serve]\nartifacts = \"s3://kib-artifacts\"\n[artifacts]\naccess_key_id = \"k\"\n")}, "access_key_id and secret_access_key: give both or neither"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			root.SetArgs(append(tt.args, "--state-dir", dir, "--workers", "0", "--listen", "127.0.0.1:0"))
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}

	srv := s3test.Start(t)
	srv.Bucket(t, "kib-artifacts")
	conf := func(url string) string {
		return writeConf(t, fmt.Sprintf("[serve]\nartifacts = %q\n[artifacts]\nendpoint = %q\naccess_key_id = %q\nsecret_access_key = %q\n", url, srv.Endpoint, srv.AccessKey, srv.SecretKey))
	}
	t.Run("missing bucket", func(t *testing.T) {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"serve", "--config", conf("s3://no-such-bucket/kib"), "--state-dir", dir, "--workers", "0", "--listen", "127.0.0.1:0"})
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--artifacts s3://no-such-bucket/kib: bucket no-such-bucket") {
			t.Errorf("err = %v, want the missing bucket named", err)
		}
	})
	t.Run("starts", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pr, pw := io.Pipe()
		var logs bytes.Buffer
		root := newRootCmd()
		root.SetOut(pw)
		root.SetErr(&logs)
		root.SetArgs([]string{"serve", "--config", conf("s3://kib-artifacts/site"), "--state-dir", dir, "--workers", "0", "--listen", "127.0.0.1:0"})
		done := make(chan error, 1)
		go func() {
			done <- root.ExecuteContext(ctx)
			pw.Close()
		}()
		if _, err := bufio.NewReader(pr).ReadString('\n'); err != nil {
			t.Fatalf("no listening line: %v (serve: %v)", err, <-done)
		}
		go io.Copy(io.Discard, pr)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if !strings.Contains(logs.String(), `"artifacts":"s3://kib-artifacts/site/"`) {
			t.Errorf("the log does not say where artifacts go:\n%s", logs.String())
		}
	})
}
