package sbom

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/manifest"
)

func TestForImage(t *testing.T) {
	m := &manifest.Manifest{Version: 1, Generator: "kib test", Distro: "debian-12", SourceDateEpoch: 1716163200,
		Sources: manifest.Sources{Debs: []manifest.Deb{
			{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", URL: "http://m/libc6.deb", Size: 1, SHA256: strings.Repeat("a", 64)},
			{Name: "apt", Version: "1:2.6.1", Arch: "amd64", URL: "http://m/apt.deb", Size: 1, SHA256: strings.Repeat("b", 64)},
		}}}
	d1, err := ForImage(m, "root.tar.xz")
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := ForImage(m, "root.tar.xz")
	b1, _ := Marshal(d1)
	b2, _ := Marshal(d2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("SBOM is not deterministic")
	}
	if d1.SPDXVersion != "SPDX-2.3" || d1.CreationInfo.Created != "2024-05-20T00:00:00Z" || len(d1.Packages) != 3 {
		t.Fatalf("document = %+v", d1)
	}
	apt := d1.Packages[1]
	if apt.Name != "apt" || apt.ExternalRefs[0].Locator != "pkg:deb/debian/apt@1:2.6.1?arch=amd64&distro=debian-12" ||
		apt.Checksums[0].Value != strings.Repeat("b", 64) {
		t.Fatalf("apt package = %+v", apt)
	}
	if len(d1.Relationships) != 3 || d1.Relationships[0].Type != "DESCRIBES" {
		t.Fatalf("relationships = %+v", d1.Relationships)
	}
}
