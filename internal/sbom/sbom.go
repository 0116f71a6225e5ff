// Package sbom writes SPDX 2.3 JSON software bills of materials for the
// packages a manifest installs.
package sbom

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/manifest"
)

// Document is an SPDX 2.3 document (the fields kib writes).
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is one SPDX package.
type Package struct {
	SPDXID           string        `json:"SPDXID"`
	Name             string        `json:"name"`
	VersionInfo      string        `json:"versionInfo"`
	DownloadLocation string        `json:"downloadLocation"`
	FilesAnalyzed    bool          `json:"filesAnalyzed"`
	Checksums        []Checksum    `json:"checksums,omitempty"`
	Supplier         string        `json:"supplier,omitempty"`
	ExternalRefs     []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPurpose   string        `json:"primaryPackagePurpose,omitempty"`
}

// Checksum is a package checksum.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// ExternalRef is a package URL or similar reference.
type ExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// Relationship links two SPDX elements.
type Relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// ForImage returns the SBOM of the packages installed in the image that m
// builds (CONTAINS) and of the build root that made it (BUILD_TOOL_OF),
// named after imageName. It depends only on m, so it is reproducible.
func ForImage(m *manifest.Manifest, imageName string) (*Document, error) {
	digest, err := m.Digest()
	if err != nil {
		return nil, err
	}
	doc := &Document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              imageName,
		DocumentNamespace: "https://kib.invalid/spdx/" + digest + "/" + url.PathEscape(imageName),
		CreationInfo: CreationInfo{
			Created:  time.Unix(m.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
			Creators: []string{"Tool: " + m.Generator},
		},
	}
	imageID := "SPDXRef-Image"
	doc.Packages = append(doc.Packages, Package{SPDXID: imageID, Name: imageName, VersionInfo: digest[:12],
		DownloadLocation: "NOASSERTION", PrimaryPurpose: "OPERATING-SYSTEM"})
	doc.Relationships = append(doc.Relationships, Relationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})
	distro := m.Distro
	if d, v, ok := strings.Cut(m.Distro, "-"); ok {
		distro = d + "-" + v
	}
	for i, d := range sortedDebs(m.Sources.Debs) {
		id := fmt.Sprintf("SPDXRef-Package-%d-%s", i, spdxIDSafe(d.Name))
		doc.Packages = append(doc.Packages, debPackage(id, d, distro, "LIBRARY"))
		doc.Relationships = append(doc.Relationships, Relationship{imageID, "CONTAINS", id})
	}
	// The build root's packages: the tools that made the image, not in it.
	for i, d := range sortedDebs(m.Sources.BuildDebs) {
		id := fmt.Sprintf("SPDXRef-BuildTool-%d-%s", i, spdxIDSafe(d.Name))
		doc.Packages = append(doc.Packages, debPackage(id, d, distro, "APPLICATION"))
		doc.Relationships = append(doc.Relationships, Relationship{id, "BUILD_TOOL_OF", imageID})
	}
	return doc, nil
}

// sortedDebs returns a copy of debs sorted by name.
func sortedDebs(debs []manifest.Deb) []manifest.Deb {
	out := append([]manifest.Deb(nil), debs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// debPackage is the SPDX package of one pinned deb, with its purl.
func debPackage(id string, d manifest.Deb, distro, purpose string) Package {
	return Package{
		SPDXID:           id,
		Name:             d.Name,
		VersionInfo:      d.Version,
		DownloadLocation: d.URL,
		Checksums:        []Checksum{{Algorithm: "SHA256", Value: d.SHA256}},
		ExternalRefs: []ExternalRef{{Category: "PACKAGE-MANAGER", Type: "purl",
			Locator: fmt.Sprintf("pkg:deb/debian/%s@%s?arch=%s&distro=%s", d.Name, url.PathEscape(d.Version), d.Arch, distro)}},
		PrimaryPurpose: purpose,
	}
}

func spdxIDSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// Marshal encodes doc as indented JSON.
func Marshal(doc *Document) ([]byte, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
