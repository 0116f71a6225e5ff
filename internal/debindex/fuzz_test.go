package debindex

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParsePackages(f *testing.F) {
	f.Add([]byte(stanza("apt", "2.6", "Depends: libc6 (>= 2.34), gpgv | gpgv2\nProvides: x (= 1)")))
	f.Add([]byte("Package: a\n continued\n\n\nPackage: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParsePackages(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses can be resolved without panicking.
		ix := NewIndex("amd64", pkgs)
		for _, p := range pkgs {
			_, _ = ix.Closure([]string{p.Name})
		}
	})
}

func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Suite: stable\nDate: Sat, 01 Jun 2024 00:00:00 UTC\nSHA256:\n " + sum + " 10 main/binary-amd64/Packages.xz\n"))
	if in, err := os.ReadFile("testdata/bookworm-InRelease"); err == nil {
		f.Add(in)
	}
	kdata, _ := os.ReadFile("../../distros/keyrings/debian-archive-keyring.gpg")
	kr, _ := ReadKeyring(kdata)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseRelease(data)
		_, _ = PlainInRelease(data)
		if kr != nil {
			_, _ = VerifyInRelease(kr, data)
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1:2.0~rc1-1", "2.0")
	f.Fuzz(func(t *testing.T, a, b string) {
		if CompareVersions(a, a) != 0 {
			t.Errorf("%q != itself", a)
		}
		x, y := CompareVersions(a, b), CompareVersions(b, a)
		if (x < 0) != (y > 0) || (x == 0) != (y == 0) {
			t.Errorf("CompareVersions(%q, %q) = %d but reversed %d", a, b, x, y)
		}
	})
}
