package debindex

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1:0.1", "2.0", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1.0-1", "1.0-2", -1},
		{"2.36-9+deb12u4", "2.36-9+deb12u10", -1},
		{"1.0a", "1.0+", -1},
		{"0:1.0", "1.0", 0},
		{"1.0-1~bpo1", "1.0-1", -1},
	} {
		got := CompareVersions(tc.a, tc.b)
		if (got < 0) != (tc.want < 0) || (got > 0) != (tc.want > 0) {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseDepends(t *testing.T) {
	got, err := ParseDepends("libc6 (>= 2.34), gpgv | gpgv2 (<< 3), perl:any, awk (> 1)")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Dep{
		{{Name: "libc6", Op: ">=", Version: "2.34"}},
		{{Name: "gpgv"}, {Name: "gpgv2", Op: "<<", Version: "3"}},
		{{Name: "perl", Arch: "any"}},
		{{Name: "awk", Op: ">=", Version: "1"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("group %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"a (>= )", "a (1.0)", "a (>= 1", "(>= 1)", "a [amd64]", "a) b"} {
		if _, err := ParseDepends(bad); err == nil {
			t.Errorf("ParseDepends(%q): no error", bad)
		}
	}
}

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func stanza(name, version, extra string) string {
	s := "Package: " + name + "\nVersion: " + version + "\nArchitecture: amd64\nFilename: pool/" + name + ".deb\nSize: 10\nSHA256: " + sum + "\n"
	if extra != "" {
		s += extra + "\n"
	}
	return s + "\n"
}

func TestParsePackagesErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Package: a\nVersion: 1\nArchitecture: amd64\n", "Filename are required"},
		{strings.Replace(stanza("a", "1", ""), "Size: 10", "Size: -1", 1), "Size"},
		{strings.Replace(stanza("a", "1", ""), sum, "xyz", 1), "SHA256"},
		{stanza("a", "x1", ""), "Version"},
		{stanza("a", "1", "Depends: b (>= )"), "Depends"},
		{stanza("a", "1", "Provides: b | c"), "Provides"},
		{" continued\n", "continuation"},
		{"no colon\n", "Field: value"},
	} {
		_, err := ParsePackages(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePackages(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestClosure(t *testing.T) {
	idx := stanza("apt", "2.6", "Depends: libapt (>= 2.6), gpgv | gpgv2, debian-keyring, awk") +
		stanza("libapt", "2.5", "") +
		stanza("libapt", "2.6.1", "Pre-Depends: libc6") +
		stanza("libc6", "2.36", "Essential: yes") +
		stanza("gpgv2", "2.2", "") + // second alternative: not taken
		stanza("gpgv", "2.2", "Depends: libc6") +
		stanza("debian-keyring", "1", "") +
		stanza("mawk", "1.3", "Provides: awk") +
		stanza("gawk", "5", "Provides: awk") +
		stanza("unrelated", "1", "")
	pkgs, err := ParsePackages(strings.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewIndex("amd64", pkgs).Closure([]string{"apt"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Name+"="+p.Version)
	}
	// gawk, not mawk: among providers the first by name.
	want := "apt=2.6 debian-keyring=1 gawk=5 gpgv=2.2 libapt=2.6.1 libc6=2.36"
	if s := strings.Join(names, " "); s != want {
		t.Errorf("closure = %s, want %s", s, want)
	}

	if e := NewIndex("amd64", pkgs).Essential(); !slices.Equal(e, []string{"libc6"}) {
		t.Errorf("Essential() = %v", e)
	}
	if _, err := NewIndex("amd64", pkgs).Closure([]string{"missing"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("closure of a missing package: %v", err)
	}
	bad, _ := ParsePackages(strings.NewReader(stanza("a", "1", "Depends: b (>= 2)") + stanza("b", "1", "")))
	if _, err := NewIndex("amd64", bad).Closure([]string{"a"}); err == nil || !strings.Contains(err.Error(), "b (>= 2)") {
		t.Errorf("closure with an unsatisfiable version: %v", err)
	}
}

// The bookworm InRelease as deb.debian.org serves it, signed by the
// bookworm and trixie archive keys (RSA) and the bookworm release key
// (ed25519, which the verifier passes over), against the keyring kib ships.
func TestVerifyInReleaseDebian(t *testing.T) {
	in, err := os.ReadFile("testdata/bookworm-InRelease")
	if err != nil {
		t.Fatal(err)
	}
	kdata, err := os.ReadFile("../../distros/keyrings/debian-archive-keyring.gpg")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ReadKeyring(kdata)
	if err != nil {
		t.Fatal(err)
	}
	text, err := VerifyInRelease(kr, in)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := ParseRelease(text)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Codename != "bookworm" || rel.Date.IsZero() {
		t.Errorf("release = %s %v", rel.Codename, rel.Date)
	}
	if f, ok := rel.Files["main/binary-amd64/Packages.xz"]; !ok || f.Size == 0 {
		t.Errorf("no main/binary-amd64/Packages.xz in %d files", len(rel.Files))
	}

	// One changed byte of the signed text, and no signature holds.
	bad := bytes.Replace(in, []byte("Codename: bookworm"), []byte("Codename: bookwork"), 1)
	if _, err := VerifyInRelease(kr, bad); err == nil {
		t.Error("a tampered InRelease verified")
	}
	if _, err := ReadKeyring(nil); err == nil {
		t.Error("an empty keyring was read")
	}
	if _, err := VerifyInRelease(kr, text); err == nil {
		t.Error("an unsigned Release verified as InRelease")
	}
}

func TestParseReleaseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"Suite: x\n", "no SHA256"},
		{"Date: yesterday\nSHA256:\n " + sum + " 1 a\n", "Date"},
		{"SHA256:\n " + sum + " x a\n", "bad size"},
		{"SHA256:\n abc 1 a\n", "sha256"},
		{"SHA256:\n " + sum + " 1\n", "want 'sum size path'"},
	} {
		_, err := ParseRelease([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRelease(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}
