package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/kojid"
)

// TestKojidOSBuildImage runs the whole osbuildImage flow through the daemon
// as `kib kojid` wires it (flags and kib.toml, the real kojid.Daemon with
// its osbuildImage and tagBuild handlers): kib koji osbuild-image → hub →
// daemon → compose service (kib serve's API and queue in remote mode, the
// daemon's in-process one in local mode) → Content Generator import → the
// tagBuild subtask the daemon takes itself; the CLI's options reach the
// task (local mode). Images come from jobs' fake
// builder; the real engine path is TestKojiImageBuilderBuildEndToEnd's.
func TestKojidOSBuildImage(t *testing.T) {
	for _, mode := range []string{"remote", "local"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hub := kojitest.New(t, kojitest.Options{})
			hub.AddUser("alice", "pw", "image")
			hub.AddUser("kib", "pw")
			hub.AddContentGenerator("kib", "kib")
			hub.AddHost("builder", "pw", []string{"x86_64", "aarch64"}, "image")
			hub.AddTag("debian-12-build", "x86_64 aarch64", "", nil)
			hub.AddTag("debian-12-candidate", "", "", nil)
			hub.AddTarget("debian-12", "debian-12-build", "debian-12-candidate")
			hub.AddRepo("debian-12-build")
			dir := t.TempDir()
			pw := writeFile(t, dir, "pw", "pw\n")
			builder := &jobstest.Builder{}

			args := []string{"--interval", "20ms", "--wait-poll", "200ms", "--work-dir", filepath.Join(dir, "work"),
				"--state-dir", filepath.Join(dir, "state"), "--cache-dir", filepath.Join(dir, "cache")}
			wantServer := "local"
			if mode == "remote" {
				cat, err := distro.Load("")
				if err != nil {
					t.Fatal(err)
				}
				q := jobstest.StartQueue(t, jobs.Config{Workers: 1, Builder: builder,
					Koji: &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}})
				api, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: hub.URL})
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(api)
				defer srv.Close()
				wantServer = srv.URL
				// The host's login and the compose service from kib.toml.
				conf := writeFile(t, dir, "kib.toml", fmt.Sprintf(`[kojid]
server = %q
user = "builder"
password_file = %q
min_space = "0"
max_load = 0

[kojid.composer]
server = %q
topurl = "https://koji.example.org/kojifiles"
`, hub.URL, pw, srv.URL))
				args = append(args, "--config", conf)
			} else {
				args = append(args, "--server", hub.URL, "--user", "builder", "--password-file", pw, "--min-space", "0",
					"--max-load", "0", "--composer-topurl", "https://koji.example.org/kojifiles",
					"--cg-user", "kib", "--cg-password-file", pw)
			}
			o := &kojidOptions{}
			cmd := bindKojidCmd(o)
			if err := cmd.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			if err := applyConfigFile(cmd, o.config, "kojid"); err != nil {
				t.Fatal(err)
			}
			log := &syncBuffer{}
			d, closeHandlers, err := o.daemon(ctx, slog.New(slog.NewTextHandler(log, nil)), log, -1, -1, builder)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("daemon: %v", err)
				}
				closeHandlers()
				if t.Failed() {
					t.Logf("daemon log:\n%s", log.String())
				}
			}()

			// Remote mode builds from the build tag's repo (topurl); local
			// mode from the task's own, with the CLI's other options.
			cli := []string{"koji", "osbuild-image", "--server", hub.URL, "--user", "alice", "--password-file", pw,
				"--poll", "20ms", "--image-type", "tar"}
			nvr, want := "Debian-Cloud-12-1", []string{`"build": 1`}
			if mode == "local" {
				custom := writeFile(t, dir, "custom.json", `{"packages":["curl"]}`)
				cli = append(cli, "--repo", "http://deb.example.org/debian", "--repo-package-sets", "os; blueprint",
					"--release", "5", "--customizations", custom)
				nvr, want = "Debian-Cloud-12-5", []string{`"package_sets": [`, `"packages": [`}
			}
			out, err := runKib(t, append(cli, "Debian-Cloud", "12", "debian-12", "debian-12", "x86_64")...)
			if err != nil {
				t.Fatalf("osbuild-image: %v\n%s", err, out)
			}
			for _, want := range []string{"Created task: 1", "1 osbuildImage (noarch) completed successfully",
				"tagBuild (noarch) completed successfully", fmt.Sprintf(`"server": %q`, wantServer)} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			reader, err := koji.New(hub.URL, koji.Options{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := reader.GetBuild(ctx, nvr)
			if err != nil || b == nil || b.State != koji.BuildComplete {
				t.Fatalf("build %+v (%v)", b, err)
			}
			arcs, err := reader.ListArchives(ctx, b.ID, "image")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, a := range arcs {
				names = append(names, a.Filename+" "+a.Arch+" "+a.TypeName)
			}
			if !containsString(names, nvr+".x86_64.tar.xz x86_64 tar") {
				t.Errorf("archives %v lack the x86_64 tar image", names)
			}
			if tagged := hub.TaggedBuilds("debian-12-candidate"); len(tagged) != 1 || int64(tagged[0]) != b.ID {
				t.Errorf("tagged builds %v, want [%d]", tagged, b.ID)
			}
			files, err := reader.ListTaskOutput(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"compose-request.json", "compose-status.json"} {
				if !containsString(files, want) {
					t.Errorf("task output %v lacks %s", files, want)
				}
			}

			// A compose that fails fails the task with the compose's error,
			// the CLI exits with it and the reservation is refunded.
			builder.Fail = map[string]bool{"x86_64": true}
			out, err = runKib(t, append(cli, "--release", "9", "Debian-Cloud", "12", "debian-12", "debian-12", "x86_64")...)
			if err == nil || !strings.Contains(err.Error(), "Compose failed") || !strings.Contains(out, "osbuildImage (noarch) failed") {
				t.Errorf("failing compose: %v\n%s", err, out)
			}
			if b, err := reader.GetBuild(ctx, "Debian-Cloud-12-9"); err != nil || b == nil || b.State != koji.BuildFailed {
				t.Errorf("failed compose's build %+v (%v), want the refunded (FAILED) reservation", b, err)
			}
		})
	}
}

// TestKojidComposerSettings: [kojid.composer] selects remote or local mode;
// half-given settings are refused with the flag named.
func TestKojidComposerSettings(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "s3cret\n")
	conf := writeFile(t, dir, "builder.conf", "[composer]\nserver = https://composer.example.org\nssl_verify = false\n[koji]\nserver = https://koji.example.org/kojihub\n")
	tests := []struct {
		name       string
		toml       string
		wantServer string // "" = local mode
		wantErr    string
	}{
		{"local", "[kojid]\nserver = \"https://hub\"\n", "", ""},
		{"remote mTLS", "[kojid.composer]\nserver = \"https://c\"\ncert = \"/c.pem\"\nkey = \"/c.key\"\n", "https://c", ""},
		{"remote OAuth", fmt.Sprintf("[kojid.composer]\nserver = \"https://c\"\nclient_id = \"kojid\"\nclient_secret_file = %q\ntoken_url = \"https://sso/token\"\n", secret), "https://c", ""},
		{"builder.conf", fmt.Sprintf("[kojid.composer]\nbuilder_conf = %q\n", conf), "https://composer.example.org", ""},
		{"cert without server", "[kojid.composer]\ncert = \"/c.pem\"\n", "", "--composer-cert: needs --composer-server"},
		{"half OAuth", "[kojid.composer]\nserver = \"https://c\"\nclient_id = \"kojid\"\n", "", "OAuth needs all three"},
		{"unknown key", "[kojid.composer]\nsevrer = \"https://c\"\n", "", "[kojid] composer_sevrer: unknown setting"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &kojidOptions{}
			cmd := bindKojidCmd(o)
			o.conn.Server = "https://hub"
			err := applyConfigFile(cmd, writeFile(t, t.TempDir(), "kib.toml", tc.toml), "kojid")
			var cc any
			if err == nil {
				var c *kojid.ComposerConfig
				c, _, err = o.composer.config(o.conn.Server)
				if c != nil {
					cc = c.Server
					if tc.name == "remote OAuth" && (c.OAuth == nil || c.OAuth.ClientSecret != "s3cret") {
						t.Errorf("OAuth %+v", c.OAuth)
					}
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := cc.(string); got != tc.wantServer {
				t.Errorf("composer server %q, want %q (empty: local mode)", got, tc.wantServer)
			}
		})
	}
}
