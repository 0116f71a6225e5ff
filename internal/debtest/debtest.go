// Package debtest makes small Debian packages and flat apt repositories for
// tests, with dpkg-deb and apt-ftparchive.
package debtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Pkg is a package to make.
type Pkg struct {
	Name    string
	Version string
	Depends string
	// Files maps paths in the package to their content.
	Files map[string]string
	// Fields are more control fields, one "Name: value" per line.
	Fields string
	// Control maps the names of more control members (postinst,
	// conffiles, triggers) to their content.
	Control map[string]string
}

// Repo makes a flat, trusted repository of pkgs in a temporary directory and
// returns its directory. It skips nothing: missing tools fail the test.
func Repo(t testing.TB, pkgs ...Pkg) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range pkgs {
		Build(t, dir, p)
	}
	Index(t, dir)
	return dir
}

// Build makes p's .deb in dir and returns its path.
func Build(t testing.TB, dir string, p Pkg) string {
	t.Helper()
	root := t.TempDir()
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: kib tests <kib@example.org>\nPriority: optional\nDescription: kib test package %s\n", p.Name, p.Version, p.Name)
	if p.Depends != "" {
		ctl += "Depends: " + p.Depends + "\n"
	}
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	if p.Fields != "" {
		ctl += strings.TrimRight(p.Fields, "\n") + "\n"
	}
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(ctl), 0o644))
	for name, data := range p.Control {
		must(t, os.WriteFile(filepath.Join(root, "DEBIAN", name), []byte(data), 0o755))
	}
	for path, data := range p.Files {
		full := filepath.Join(root, path)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(data), 0o644))
	}
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_amd64.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a")))
	run(t, "", "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out)
	return out
}

// Index writes Packages and Release for the flat repository dir.
func Index(t testing.TB, dir string) {
	t.Helper()
	idx := run(t, dir, "apt-ftparchive", "packages", ".")
	must(t, os.WriteFile(filepath.Join(dir, "Packages"), idx, 0o644))
	rel := run(t, dir, "apt-ftparchive", "-o", "APT::FTPArchive::Release::Date=Sat, 01 Jun 2024 00:00:00 UTC", "release", ".")
	must(t, os.WriteFile(filepath.Join(dir, "Release"), rel, 0o644))
}

func run(t testing.TB, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
