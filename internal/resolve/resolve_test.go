package resolve

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/stageopt"
)

// recordingSolver returns one pinned package and keeps the request, so a
// test sees which repositories and packages the resolver asked for.
// recordingSolver records the image's depsolve request: the first one
// (the build root's package set is solved after it).
type recordingSolver struct {
	got   depsolve.Request
	calls int
}

func (s *recordingSolver) Solve(_ context.Context, req depsolve.Request) (*depsolve.Result, error) {
	if s.calls == 0 {
		s.got = req
	}
	s.calls++
	return &depsolve.Result{RepoDate: time.Unix(1700000000, 0), Packages: []depsolve.Package{
		{Name: "base-files", Version: "12.4", Arch: "amd64", URL: "http://deb.debian.org/debian/pool/b.deb", Size: 1, SHA256: strings.Repeat("a", 64)},
	}}, nil
}

const testKey = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGTest\n-----END PGP PUBLIC KEY BLOCK-----\n"

func setup(t *testing.T) (*Resolver, *recordingSolver) {
	t.Helper()
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingSolver{}
	return &Resolver{Distros: cat, Solver: s, KeyDir: t.TempDir(), FileRoots: []string{"/srv/kib-repos"}}, s
}

func stageOptions(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func TestManifestHonoursTheRequest(t *testing.T) {
	r, s := setup(t)
	size := int64(3 << 30)
	bp := &blueprint.Blueprint{Customizations: &blueprint.Customizations{
		Timezone: &blueprint.Timezone{Timezone: "UTC", NTPServers: []string{"ntp.example.org"}},
		Locale:   &blueprint.Locale{Languages: []string{"C.UTF-8"}, Keyboard: "de"},
	}}
	req := &Request{Distro: "debian-12", Arch: "x86_64", ImageType: "qcow2", Size: &size, Blueprint: bp,
		Repositories: []Repository{
			{Source: "https://repo.example.org/debian", GPGKey: testKey, CheckGPG: true, PackageSets: []string{"os"}},
			{Source: "http://deb.debian.org/debian"},
		}}
	m, err := r.Manifest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The keyed repository is verified with its key, the other with the
	// distro's keyring; neither is trusted without a signature.
	if len(s.got.Repos) != 2 {
		t.Fatalf("repos = %+v", s.got.Repos)
	}
	key := s.got.Repos[0]
	if key.Trusted || !strings.HasPrefix(key.SignedBy, r.KeyDir) {
		t.Errorf("keyed repo = %+v, want signed by a keyring under %s", key, r.KeyDir)
	}
	if b, err := os.ReadFile(key.SignedBy); err != nil || string(b) != testKey {
		t.Errorf("keyring %s = %q, %v", key.SignedBy, b, err)
	}
	if d := s.got.Repos[1]; d.Trusted || d.SignedBy != "/usr/share/keyrings/debian-archive-keyring.gpg" {
		t.Errorf("plain repo = %+v", d)
	}
	if !strings.Contains(strings.Join(s.got.Packages, " "), "systemd-timesyncd") {
		t.Errorf("packages %v lack systemd-timesyncd for ntpservers", s.got.Packages)
	}
	var tz stageopt.Timezone
	var loc stageopt.Locale
	var files stageopt.Files
	var fin stageopt.DebianFinalize
	var disk stageopt.GPT
	for _, p := range m.Pipelines {
		for _, st := range p.Stages {
			switch st.Type {
			case "timezone":
				stageOptions(t, st.Options, &tz)
			case "locale":
				stageOptions(t, st.Options, &loc)
			case "files":
				stageOptions(t, st.Options, &files)
			case "debian-finalize":
				stageOptions(t, st.Options, &fin)
			case "gpt":
				stageOptions(t, st.Options, &disk)
			}
		}
	}
	if len(tz.NTPServers) != 1 || tz.NTPServers[0] != "ntp.example.org" {
		t.Errorf("timezone stage = %+v", tz)
	}
	if loc.Keyboard != "de" {
		t.Errorf("locale stage = %+v", loc)
	}
	imgKey := "/etc/apt/keyrings/" + filepath.Base(key.SignedBy)
	if len(files.Files) != 1 || files.Files[0].Path != imgKey || files.Files[0].Data != testKey {
		t.Errorf("files stage = %+v, want the key at %s", files, imgKey)
	}
	if !strings.Contains(strings.Join(fin.Sources, "\n"), "signed-by="+imgKey+"] https://repo.example.org/debian") {
		t.Errorf("image sources %q do not use the image's copy of the key", fin.Sources)
	}
	if disk.Size != uint64(size) {
		t.Errorf("disk size = %d, want %d", disk.Size, size)
	}
}

func TestRefusals(t *testing.T) {
	r, _ := setup(t)
	tests := []struct {
		name string
		repo Repository
		want string
	}{
		{"file outside the allow-list", Repository{Source: "file:///etc ./"}, "repositories[0].baseurl"},
		{"file escaping the allow-list", Repository{Source: "file:///srv/kib-repos/../../etc ./"}, "repositories[0].baseurl"},
		{"unused package set", Repository{Source: "http://x/debian", PackageSets: []string{"build"}}, "repositories[0].package_sets"},
		{"check_gpg without key", Repository{Source: "http://x/debian", CheckGPG: true}, "repositories[0].gpgkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Manifest(context.Background(), &Request{Distro: "debian-12", Arch: "x86_64", ImageType: "tar", Repositories: []Repository{tt.repo}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if err := r.CheckRepository("repositories[0]", tt.repo); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckRepository = %v, want %q", err, tt.want)
			}
		})
	}
	// An allowed directory is accepted, but not trusted for its scheme.
	root := t.TempDir()
	r.FileRoots = []string{root}
	if err := r.CheckRepository("r", Repository{Source: "file://" + root + "/repo ./"}); err != nil {
		t.Errorf("allowed file: repository: %v", err)
	}
	repos, _, err := r.repos(mustDef(t, r), []Repository{{Source: "file://" + root + "/repo ./"}})
	if err != nil || repos[0].Trusted || repos[0].SignedBy == "" {
		t.Errorf("file: repository = %+v, %v; want it verified with a keyring", repos, err)
	}
	// A symbolic link inside the allowed directory cannot lead out.
	os.Symlink("/etc", filepath.Join(root, "link"))
	if err := r.CheckRepository("r", Repository{Source: "file://" + root + "/link ./"}); err == nil {
		t.Error("a symlink out of the allowed directory was accepted")
	}
}

func mustDef(t *testing.T, r *Resolver) *distro.Definition {
	def, err := r.Distros.Get("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	return def
}
