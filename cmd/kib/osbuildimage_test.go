package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/kojid"
	"github.com/kib-project/kib/internal/kojid/hosttest"
)

// TestKojiOSBuildImage runs `kib koji osbuild-image` against a kojitest hub
// whose build host runs kib's osbuildImage handler, remote (kib serve's
// compose API and queue) and local: the CLI creates the task, waits for
// it and prints the result; the build is imported and tagged.
func TestKojiOSBuildImage(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote", true: "local"}[local], func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hub := kojitest.New(t, kojitest.Options{})
			hub.AddUser("alice", "pw", "image")
			hub.AddUser("kib", "pw")
			hub.AddContentGenerator("kib", "kib")
			hub.AddHost("builder", "pw", []string{"x86_64"}, "image")
			hub.AddTag("debian-12-build", "x86_64", "", nil)
			hub.AddTag("debian-12-candidate", "", "", nil)
			hub.AddTarget("debian-12", "debian-12-build", "debian-12-candidate")
			host, err := hub.Connector("builder", "pw")(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := host.ExclusiveSession(ctx, false); err != nil {
				t.Fatal(err)
			}
			if err := host.UpdateHost(ctx, 0, true, nil); err != nil {
				t.Fatal(err)
			}
			cat, err := distro.Load("")
			if err != nil {
				t.Fatal(err)
			}
			builder := &jobstest.Builder{}
			cfg := kojid.OSBuildConfig{KojiServer: hub.URL, PollMin: 20 * time.Millisecond}
			if local {
				cfg.Local = &kojid.LocalConfig{StateDir: t.TempDir(), Builder: builder, Distros: cat, Connect: hub.Connector("kib", "pw")}
			} else {
				q := jobstest.StartQueue(t, jobs.Config{Workers: 1, Builder: builder, Koji: &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}})
				api, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: hub.URL})
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(api)
				defer srv.Close()
				cfg.Composer = &kojid.ComposerConfig{Server: srv.URL}
			}
			h, err := kojid.NewOSBuildImage(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				hosttest.Run(ctx, t, host, map[string]kojid.Handler{"osbuildImage": h, "tagBuild": hosttest.TagBuild})
			}()
			defer func() { cancel(); <-done }()

			pw := filepath.Join(t.TempDir(), "pw")
			os.WriteFile(pw, []byte("pw\n"), 0o600)
			custom := filepath.Join(t.TempDir(), "custom.json")
			os.WriteFile(custom, []byte(`{"packages":["curl"]}`), 0o644)
			out, err := runKib(t, "koji", "osbuild-image", "--server", hub.URL, "--user", "alice", "--password-file", pw, "--poll", "20ms",
				"--image-type", "tar", "--repo", "http://deb.example.org/debian", "--repo-package-sets", "os; blueprint", "--release", "5",
				"--customizations", custom, "Debian-Cloud", "12", "debian-12", "debian-12", "x86_64")
			if err != nil {
				t.Fatalf("osbuild-image: %v\n%s", err, out)
			}
			for _, want := range []string{"Created task: 1", "1 osbuildImage (noarch) completed successfully", "tagBuild (noarch) completed successfully", `"build": 1`, `"package_sets": [`} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			reader, _ := koji.New(hub.URL, koji.Options{})
			b, err := reader.GetBuild(ctx, "Debian-Cloud-12-5")
			if err != nil || b == nil || b.State != koji.BuildComplete {
				t.Fatalf("build %+v (%v)", b, err)
			}
			if tagged := hub.TaggedBuilds("debian-12-candidate"); len(tagged) != 1 {
				t.Errorf("tagged: %v", tagged)
			}
		})
	}
}

func TestKojiOSBuildImageFlagErrors(t *testing.T) {
	base := []string{"koji", "osbuild-image", "--server", "http://127.0.0.1:1/kojihub"}
	args := []string{"n", "1", "debian-12", "target", "x86_64"}
	tests := []struct {
		flags []string
		want  string
	}{
		{[]string{"--image-type", "tar", "--image-type", "qcow2"}, "--image-type given 2 times"},
		{[]string{"--repo-package-sets", "a"}, "needs a --repo before it"},
		{[]string{"--wait", "--nowait"}, "--wait and --nowait"},
		{[]string{"--customizations", "/nonexistent.json"}, "--customizations:"},
	}
	for _, tc := range tests {
		out, err := runKib(t, append(append(append([]string{}, base...), tc.flags...), args...)...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: %v %s, want %q", tc.flags, err, out, tc.want)
		}
	}
	if _, err := runKib(t, "koji", "osbuild-image", "--server", "http://x", "n", "1", "d", "t"); err == nil {
		t.Error("four arguments accepted")
	}
}
