package aptroot

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	//lint:ignore SA1019 makes a throwaway key for the test; debindex verifies with the same package
	"golang.org/x/crypto/openpgp"

	"github.com/kib-project/kib/internal/debtest"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/manifest"
)

// TestRootResolvesLikeHost resolves one request with the host's apt and
// with apt in a root kib bootstraps (as on a host without apt), against the
// distro's repositories (verified with the keyring kib ships) and a local
// flat repository, and gets the same result, byte for byte. A second solve
// reuses the cached root.
func TestRootResolvesLikeHost(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves against the Debian archive twice; run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("apt in a root needs root (mount namespaces)")
	}
	ctx := context.Background()
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	def, err := cat.Get("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if len(def.KeyringData) == 0 {
		t.Fatal("debian-12 ships no keyring")
	}
	host, err := depsolve.HostSources("/")
	if err != nil {
		t.Fatal(err)
	}
	repos, err := manifest.ResolveRepos(def, host, nil)
	if err != nil {
		t.Fatal(err)
	}
	local := debtest.Repo(t, debtest.Pkg{Name: "kib-test-tool", Version: "1.0", Depends: "libc6 (>= 2.30), kib-no-such-package | mawk",
		Files: map[string]string{"/usr/share/kib-test-tool/README": "a local package\n"}})
	repos = append(repos, depsolve.Repo{URL: "file://" + local, Suite: "./", Trusted: true})
	req := depsolve.Request{Arch: "amd64", Repos: repos, Packages: []string{"?essential", "apt", "kib-test-tool"}}

	hostRes, err := (&depsolve.Solver{CacheDir: t.TempDir(), Apt: depsolve.AptHost}).Solve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	var log bytes.Buffer
	rootSolver := &depsolve.Solver{CacheDir: t.TempDir(), Apt: depsolve.AptRoot, Roots: &Bootstrapper{StoreDir: storeDir}, Log: &log}
	rootRes, err := rootSolver.Solve(ctx, req)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	a, _ := json.Marshal(hostRes)
	b, _ := json.Marshal(rootRes)
	if !bytes.Equal(a, b) {
		t.Errorf("apt in a root resolved differently from the host's apt:\nhost: %s\nroot: %s", a, b)
	}
	if !strings.Contains(string(b), "kib-test-tool") {
		t.Errorf("the local repository's package is missing: %s", b)
	}

	objs, _ := os.ReadDir(filepath.Join(storeDir, "objects"))
	if len(objs) != 1 {
		t.Fatalf("store holds %d objects, want the one apt root", len(objs))
	}
	if _, err := rootSolver.Solve(ctx, req); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadDir(filepath.Join(storeDir, "objects"))
	if len(again) != 1 || again[0].Name() != objs[0].Name() {
		t.Errorf("the second solve made another root: %v then %v", objs, again)
	}
}

func foreignKeyring(t *testing.T) []byte {
	t.Helper()
	e, err := openpgp.NewEntity("kib test", "", "kib@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A repository signed by a key the keyring lacks is refused before any deb
// is fetched.
func TestRootRefusesUnverifiedRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the Debian archive's Release file")
	}
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := cat.Get("debian-12")
	host, _ := depsolve.HostSources("/")
	repos, err := manifest.ResolveRepos(def, host, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A key of its own: the archive's signatures cannot be checked with it.
	r := repos[0]
	r.Keyring = foreignKeyring(t)
	storeDir := filepath.Join(t.TempDir(), "store")
	_, err = (&Bootstrapper{StoreDir: storeDir}).AptRoot(context.Background(), []depsolve.Repo{r}, "amd64")
	if err == nil || !strings.Contains(err.Error(), "no good signature") {
		t.Fatalf("error = %v, want a refused signature", err)
	}
	if srcs, _ := os.ReadDir(filepath.Join(storeDir, "sources/sha256")); len(srcs) != 0 {
		t.Errorf("%d debs fetched from an unverified repository", len(srcs))
	}
}
