package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
)

var update = flag.Bool("update", false, "rewrite the golden manifests under testdata/generate")

// fixedSolver resolves every package set to made-up packages derived from
// the names asked for, so a generated manifest depends on the generator
// alone.
type fixedSolver struct{}

func (fixedSolver) Solve(_ context.Context, req depsolve.Request) (*depsolve.Result, error) {
	var pkgs []depsolve.Package
	for i, p := range req.Packages {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return -1
		}, p)
		sum := sha256.Sum256([]byte(p))
		pkgs = append(pkgs, depsolve.Package{Name: name, Version: "1.0-1", Arch: req.Arch,
			URL: "http://deb.example/debian/pool/main/" + name + "_1.0-1_" + req.Arch + ".deb", Size: int64(1000 + i), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(pkgs, func(a, b depsolve.Package) int { return strings.Compare(a.Name, b.Name) })
	pkgs = slices.CompactFunc(pkgs, func(a, b depsolve.Package) bool { return a.Name == b.Name })
	return &depsolve.Result{Packages: pkgs, RepoDate: time.Date(2024, 5, 20, 0, 0, 0, 0, time.UTC)}, nil
}

// TestGenerateGolden generates a manifest of every image type of the
// embedded distros with every customization a blueprint has, and compares
// its canonical bytes with testdata/generate: a change of the generator or
// of a stage's options that alters a manifest by one byte shows here
// (go test -run TestGenerateGolden -update rewrites them).
func TestGenerateGolden(t *testing.T) {
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := 1001, 1002
	bp := &blueprint.Blueprint{
		Packages: []blueprint.Package{{Name: "vim"}},
		Customizations: &blueprint.Customizations{
			Hostname: ptr("golden"),
			User: []blueprint.User{{Name: "alice", Description: "Alice", Password: "$6$salt$hash", Keys: []string{"ssh-ed25519 AAAA alice"},
				Home: "/home/alice", Shell: "/bin/bash", Groups: []string{"wheel"}, UID: &uid, GID: &gid}},
			Group:    []blueprint.Group{{Name: "wheel", GID: &gid}},
			Services: &blueprint.Services{Enabled: []string{"ssh.service"}, Disabled: []string{"cron.service"}},
			Timezone: &blueprint.Timezone{Timezone: "Europe/Prague", NTPServers: []string{"0.debian.pool.ntp.org"}},
			Locale:   &blueprint.Locale{Languages: []string{"de_DE.UTF-8"}, Keyboard: "de"},
			Kernel:   &blueprint.Kernel{Append: "quiet"},
			Files:    []blueprint.File{{Path: "/etc/motd", Data: "hello\n", Mode: "0644", User: "alice", Group: "wheel"}},
			Disk:     &blueprint.Disk{MinSize: "5GiB"},
		},
	}
	for _, name := range cat.Names() {
		def, err := cat.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		repos, err := ResolveRepos(def, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range slices.Sorted(maps.Keys(def.ImageTypes)) {
			t.Run(name+"/"+it, func(t *testing.T) {
				m, err := Generate(context.Background(), fixedSolver{}, Request{Distro: def, Arch: "x86_64", ImageType: it, Repos: repos, Blueprint: bp})
				if err != nil {
					t.Fatal(err)
				}
				m.Generator = "kib (golden)"
				got, err := m.Canonical()
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join("testdata", "generate", name+"-"+it+".json")
				if *update {
					if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(file, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (go test -run TestGenerateGolden -update writes it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("manifest differs from %s:\n%s", file, got)
				}
				if err := m.Validate(); err != nil {
					t.Errorf("generated manifest does not validate: %v", err)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }
