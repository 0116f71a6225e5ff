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

// TestForImageBuildRoot checks that the build root's packages are named as
// the image's build tools, not as its content.
func TestForImageBuildRoot(t *testing.T) {
	m := &manifest.Manifest{Version: 1, Generator: "kib test", Distro: "debian-12", SourceDateEpoch: 1716163200,
		Sources: manifest.Sources{
			Debs:      []manifest.Deb{{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", URL: "http://m/libc6.deb", Size: 1, SHA256: strings.Repeat("a", 64)}},
			BuildDebs: []manifest.Deb{{Name: "mmdebstrap", Version: "1.3.5-7", Arch: "all", URL: "http://m/mmdebstrap.deb", Size: 1, SHA256: strings.Repeat("c", 64)}},
		}}
	doc, err := ForImage(m, "disk.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Packages) != len(m.Sources.Debs)+2 {
		t.Fatalf("%d packages, want the image, its %d packages and one build tool", len(doc.Packages), len(m.Sources.Debs))
	}
	last := doc.Packages[len(doc.Packages)-1]
	rel := doc.Relationships[len(doc.Relationships)-1]
	if last.Name != "mmdebstrap" || last.PrimaryPurpose != "APPLICATION" ||
		rel != (Relationship{last.SPDXID, "BUILD_TOOL_OF", "SPDXRef-Image"}) {
		t.Errorf("build tool %+v, relationship %+v", last, rel)
	}
}
