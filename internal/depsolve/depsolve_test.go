package depsolve

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/debtest"
)

func TestParseURIs(t *testing.T) {
	out := []byte(`'http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_amd64.deb' libc6_2.36-9+deb12u14_amd64.deb 2759320 SHA256:ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf
'http://deb.debian.org/debian/pool/main/a/apt/apt_1%3a2.6.1_amd64.deb' apt_1%3a2.6.1_amd64.deb 1234 SHA256:BA4F88F73DBC3AE9055F3C20F4523BFDBAF1AD13FF95E258924F77D20B4FBEDF
`)
	pkgs, err := ParseURIs(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "apt", Version: "1:2.6.1", Arch: "amd64", URL: "http://deb.debian.org/debian/pool/main/a/apt/apt_1%3a2.6.1_amd64.deb", Size: 1234, SHA256: "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"},
		{Name: "libc6", Version: "2.36-9+deb12u14", Arch: "amd64", URL: "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_amd64.deb", Size: 2759320, SHA256: "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"},
	}
	if len(pkgs) != len(want) {
		t.Fatalf("got %d packages, want %d", len(pkgs), len(want))
	}
	for i := range want {
		if pkgs[i] != want[i] {
			t.Errorf("package %d = %+v, want %+v", i, pkgs[i], want[i])
		}
	}
	if got := pkgs[0].Filename(); got != "apt_1%3a2.6.1_amd64.deb" {
		t.Errorf("Filename() = %q", got)
	}
}

func TestParseURIsErrors(t *testing.T) {
	tests := []struct{ name, line, want string }{
		{"md5", `'http://x/a_1_amd64.deb' a_1_amd64.deb 10 MD5Sum:abc`, "want a SHA256"},
		{"size", `'http://x/a_1_amd64.deb' a_1_amd64.deb -1 SHA256:` + strings.Repeat("a", 64), "bad size"},
		{"name", `'http://x/a.deb' a.deb 10 SHA256:` + strings.Repeat("a", 64), "name_version_arch"},
		{"quote", `'http://x/a_1_amd64.deb a_1_amd64.deb 10`, "unterminated"},
		{"fields", `'http://x/a_1_amd64.deb' a_1_amd64.deb`, "want 'URL'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURIs([]byte(tt.line))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func FuzzParseURIs(f *testing.F) {
	f.Add([]byte(`'http://deb.debian.org/debian/pool/main/a/apt/apt_1%3a2.6.1_amd64.deb' apt_1%3a2.6.1_amd64.deb 1234 SHA256:ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf`))
	f.Add([]byte("'x' y z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseURIs(data)
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" || p.Size <= 0 || len(p.SHA256) != 64 {
				t.Fatalf("accepted an incomplete package %+v", p)
			}
		}
	})
}

func TestReleaseDate(t *testing.T) {
	inrelease := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nDate: Sat, 10 May 2025 09:33:33 UTC\nSuite: stable\n-----BEGIN PGP SIGNATURE-----\n"
	got, ok := releaseDate([]byte(inrelease))
	if !ok || !got.Equal(time.Date(2025, 5, 10, 9, 33, 33, 0, time.UTC)) {
		t.Fatalf("releaseDate = %v, %v", got, ok)
	}
	if _, ok := releaseDate([]byte("Origin: x\n")); ok {
		t.Fatal("found a date where there is none")
	}
}

func TestSolveLocalRepo(t *testing.T) {
	repo := debtest.Repo(t,
		debtest.Pkg{Name: "kib-a", Version: "1.0", Depends: "kib-b (>= 2)"},
		debtest.Pkg{Name: "kib-b", Version: "1:2.0-1"},
		debtest.Pkg{Name: "kib-c", Version: "3.0"},
	)
	s := &Solver{CacheDir: t.TempDir()}
	r := Repo{URL: "file://" + repo, Suite: "./", Trusted: true}
	ctx := context.Background()

	res, err := s.Solve(ctx, Request{Arch: "amd64", Repos: []Repo{r}, Packages: []string{"kib-a"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range res.Packages {
		names = append(names, p.Name+"="+p.Version)
		if len(p.SHA256) != 64 || p.Size <= 0 || !strings.HasPrefix(p.URL, "file:") {
			t.Errorf("package %+v is not pinned", p)
		}
	}
	if got := strings.Join(names, " "); got != "kib-a=1.0 kib-b=1:2.0-1" {
		t.Errorf("resolved %q, want kib-a and its dependency kib-b", got)
	}
	if !res.RepoDate.Equal(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("RepoDate = %v, want the Release file's date", res.RepoDate)
	}

	_, err = s.Solve(ctx, Request{Arch: "amd64", Repos: []Repo{r}, Packages: []string{"kib-a", "no-such-package"}})
	var nf *NotFoundError
	if !errors.As(err, &nf) || len(nf.Names) != 1 || nf.Names[0] != "no-such-package" {
		t.Fatalf("error = %v, want a NotFoundError naming no-such-package", err)
	}
}

func TestSolveUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s := &Solver{CacheDir: t.TempDir()}
	r := Repo{URL: "http://" + addr + "/debian", Suite: "bookworm", Components: []string{"main"}, Trusted: true}
	_, err = s.Solve(context.Background(), Request{Arch: "amd64", Repos: []Repo{r}, Packages: []string{"bash"}})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("error = %v, want an UnreachableError naming %s", err, addr)
	}
}

func TestParseAptMode(t *testing.T) {
	for in, want := range map[string]AptMode{"": AptAuto, "auto": AptAuto, "host": AptHost, "root": AptRoot} {
		if got, err := ParseAptMode(in); err != nil || got != want {
			t.Errorf("ParseAptMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseAptMode("chroot"); err == nil || !strings.Contains(err.Error(), "auto, host or root") {
		t.Errorf("ParseAptMode(chroot) = %v", err)
	}
}

// A keyring kib ships is what apt reads, from the isolated state; the
// repository's line (as the manifest records it) keeps its signed-by path.
func TestPrepareShippedKeyring(t *testing.T) {
	s := &Solver{CacheDir: t.TempDir()}
	r := Repo{URL: "http://deb.debian.org/debian", Suite: "bookworm", Components: []string{"main"},
		SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg", Keyring: []byte("key bytes")}
	root, unlock, err := s.prepare(Request{Arch: "amd64", Repos: []Repo{r}}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	list, err := os.ReadFile(filepath.Join(root, "etc/apt/sources.list"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.TrimPrefix(string(list), "deb [signed-by="))
	if len(f) == 0 || !strings.HasPrefix(f[0], filepath.Join(root, "keyrings")+"/") {
		t.Fatalf("sources.list = %q, want signed-by in the state's keyrings", list)
	}
	key, err := os.ReadFile(strings.TrimSuffix(f[0], "]"))
	if err != nil || string(key) != "key bytes" {
		t.Errorf("keyring file = %q, %v", key, err)
	}
	if !strings.Contains(r.Line(), "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg") {
		t.Errorf("Line() = %q", r.Line())
	}
	conf, _ := os.ReadFile(filepath.Join(root, "apt.conf"))
	if strings.Contains(string(conf), "Sandbox::User") {
		t.Errorf("host apt gets a sandbox user override: %s", conf)
	}
}
