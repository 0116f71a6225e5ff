package kojimeta

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/version"
)

var update = flag.Bool("update", false, "rewrite golden files")

// jsonEqual compares the JSON encoding of got with the golden file.
func jsonEqual(t *testing.T, golden string, got any) {
	t.Helper()
	raw, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", golden)
	if *update {
		if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w, g) {
		t.Errorf("%s differs:\ngot  %s\nwant %s", golden, raw, want)
	}
}

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// docInput is the build of the examples in koji-integration.md.
func docInput() Input {
	bi := BuildInfo{Arch: "x86_64", BootMode: "hybrid", ExportName: "xz", ExportFilename: "image.raw.xz", KibVersion: "93",
		SHA256: sum, Size: 10, Distro: "fedora-39", ImageType: "qcow2"}
	names, _ := ImageFilenames("name", "version", "release", []BuildInfo{bi})
	artifact := &OSBuildArtifact{ExportFilename: "image.raw.xz", ExportName: "xz"}
	return Input{
		Name: "name", Version: "version", Release: "release",
		Start: time.Unix(1700000000, 0), End: time.Unix(1700000100, 0), HostOS: "fedora-39", HostArch: "x86_64",
		OSBuildVersion:  "93",
		ComposerVersion: "git-rev:f6e0e993919cb114e4437299020e80032d0e40a7",
		Deps:            []version.Dep{{Path: "github.com/osbuild/images", Version: "v0.7.0"}},
		Images: []Image{{
			Info:     bi,
			Image:    File{Filename: names[0], Size: 10, SHA256: sum},
			Manifest: &File{Filename: names[0] + ".manifest.json", Size: 5, SHA256: sum},
			UploadTargetResults: []UploadTargetResult{{Name: "org.osbuild.aws",
				Options: map[string]any{"ami": "ami-0d06fff61b0395df0", "region": "us-east-1"}, OSBuildArtifact: artifact}},
		}},
	}
}

func TestDocumentExamples(t *testing.T) {
	m, err := BuildMetadata(docInput())
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "build-extra.json", m.Build.Extra)
	jsonEqual(t, "image-output-extra.json", m.Outputs[0].Extra["image"])
	jsonEqual(t, "manifest-output-extra.json", m.Outputs[1].Extra["image"])
	if m.Outputs[0].Filename != "name-version-release.x86_64.raw.xz" || m.Outputs[1].Filename != "name-version-release.x86_64.raw.xz.manifest.json" {
		t.Errorf("filenames %q %q", m.Outputs[0].Filename, m.Outputs[1].Filename)
	}
	cs := NewComposeStatus(1, 0, []ImageStatus{{Status: StatusSuccess, UploadStatus: &UploadStatus{
		Options: map[string]any{"ami": "ami-02e34403c421dfc17", "region": "us-east-1"}, Status: StatusSuccess, Type: "aws"}}})
	jsonEqual(t, "compose-status.json", cs)
}

// TestKibImport is a whole import of two images of a kib build, with
// packages, SBOMs and a log, and a task id.
func TestKibImport(t *testing.T) {
	qcow := BuildInfo{Arch: "x86_64", BootMode: "hybrid", ExportName: "qcow2", ExportFilename: "disk.qcow2", KibVersion: "0.1.0",
		SHA256: sum, Size: 1 << 30, Distro: "debian-12", ImageType: "qcow2", ManifestSHA256: sum,
		Packages: []buildinfo.Package{{Name: "bash", Version: "5.2.15-2+b7", Arch: "amd64", SHA256: sum}},
		BuildRoot: []buildinfo.Package{{Name: "e2fsprogs", Version: "1.47.0-2", Arch: "amd64", SHA256: sum, Size: 571000},
			{Name: "mmdebstrap", Version: "1.3.5-7", Arch: "all", SHA256: sum, Size: 99000},
			{Name: "libc6", Version: "2.36-9+deb12u13", Arch: "amd64", SHA256: sum, Size: 2757000}}}
	tar := BuildInfo{Arch: "x86_64", BootMode: "none", ExportName: "archive", ExportFilename: "root.tar.xz", KibVersion: "0.1.0",
		SHA256: sum, Size: 1 << 20, Distro: "debian-12", ImageType: "tar", ManifestSHA256: sum}
	names, err := ImageFilenames("debian-cloud", "12", "20261122.1", []BuildInfo{qcow, tar})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Name: "debian-cloud", Version: "12", Release: "20261122.1", BuildID: 7, TaskID: 42,
		Start: time.Unix(1700000000, 0), End: time.Unix(1700000600, 0), HostOS: "debian-12", HostArch: "x86_64",
		OSBuildVersion: "0.1.0", ComposerVersion: "kib-0.1.0", Deps: []version.Dep{{Path: "github.com/spf13/cobra", Version: "v1.10.2"}}}
	for i, bi := range []BuildInfo{qcow, tar} {
		in.Images = append(in.Images, Image{Info: bi, Image: File{Filename: names[i], Size: bi.Size, SHA256: sum},
			Manifest: &File{Filename: names[i] + ".manifest.json", Size: 100, SHA256: sum},
			SBOMs:    []File{{Filename: names[i] + ".image-os.spdx.json", Size: 200, SHA256: sum}},
			Logs:     []File{{Filename: names[i] + ".kib.log", Size: 300, SHA256: sum}}})
	}
	m, err := BuildMetadata(in)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "kib-import.json", m)
	// The build root's packages are the qcow2's buildroot: its image tools
	// by version, every deb as a file component, and by name in extra.
	br := m.Buildroots[0]
	if len(br.Components) != 3 || br.Components[0] != (Component{Type: "file", Filename: "e2fsprogs_1.47.0-2_amd64.deb",
		Filesize: 571000, Checksum: sum, ChecksumType: "sha256"}) {
		t.Errorf("buildroot components = %+v", br.Components)
	}
	if len(br.Tools) != 3 || br.Tools[1] != (Tool{"mmdebstrap", "1.3.5-7"}) || br.Tools[2] != (Tool{"e2fsprogs", "1.47.0-2"}) {
		t.Errorf("buildroot tools = %+v", br.Tools)
	}
	if len(m.Buildroots[1].Components) != 0 || m.Buildroots[1].Extra != nil {
		t.Errorf("a build without a build root lists %+v", m.Buildroots[1])
	}
}

func TestImageFilenames(t *testing.T) {
	a := BuildInfo{Arch: "x86_64", ExportFilename: "root.tar.xz", ImageType: "tar"}
	b := BuildInfo{Arch: "x86_64", ExportFilename: "container.tar", ImageType: "container"}
	c := BuildInfo{Arch: "x86_64", ExportFilename: "other.tar", ImageType: "oci"}
	got, err := ImageFilenames("n", "1", "1", []BuildInfo{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"n-1-1.x86_64.tar.xz", "n-1-1.container.x86_64.tar", "n-1-1.oci.x86_64.tar"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ImageFilenames("n", "1", "1", []BuildInfo{{Arch: "x86_64", ExportFilename: "image.ami"}}); err == nil || !strings.Contains(err.Error(), "not a Koji archive type") {
		t.Errorf(".ami: %v", err)
	}
}

func TestBuildMetadataErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(in *Input)
		want   string
	}{
		{"dash in version", func(in *Input) { in.Version = "1-2" }, "build version"},
		{"no images", func(in *Input) { in.Images = nil }, "at least one image"},
		{"bad boot mode", func(in *Input) { in.Images[0].Info.BootMode = "bios" }, "boot_mode"},
		{"bad sha", func(in *Input) { in.Images[0].Image.SHA256 = "XYZ" }, "sha256"},
		{"duplicate name", func(in *Input) { in.Images[0].Manifest.Filename = in.Images[0].Image.Filename }, "used twice"},
		{"unknown extension", func(in *Input) { in.Images[0].Image.Filename = "x.ami" }, "not a Koji archive type"},
		{"end before start", func(in *Input) { in.End = in.Start.Add(-time.Second) }, "end must not be before start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := docInput()
			tt.mutate(&in)
			if _, err := BuildMetadata(in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestReadBuildInfo(t *testing.T) {
	dir := t.TempDir()
	good := `{"arch":"x86_64","boot_mode":"uefi","export_name":"qcow2","export_filename":"disk.qcow2","kib_version":"0.1.0",
"sha256":"` + sum + `","size":5,"distro":"debian-12","image_type":"qcow2","packages":[],"manifest_sha256":"` + sum + `"}`
	tests := []struct {
		name, doc, want string
	}{
		{"good", good, ""},
		{"unknown field", strings.Replace(good, `"size"`, `"sizes"`, 1), "unknown field"},
		{"bad boot mode", strings.Replace(good, "uefi", "efi", 1), "boot_mode"},
		{"bad extension", strings.Replace(good, "disk.qcow2", "disk.ami", 1), "not a Koji archive type"},
		{"not json", "{", "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".json")
			if err := os.WriteFile(p, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			bi, err := ReadBuildInfo(p)
			if tt.want == "" {
				if err != nil || bi.ExportFilename != "disk.qcow2" {
					t.Fatalf("%+v %v", bi, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestComposeStatus(t *testing.T) {
	for _, tt := range []struct {
		images []ImageStatus
		want   string
	}{
		{nil, StatusSuccess},
		{[]ImageStatus{{Status: StatusSuccess}, {Status: StatusBuilding}}, StatusPending},
		{[]ImageStatus{{Status: StatusBuilding}, {Status: StatusFailure}}, StatusFailure},
	} {
		if got := NewComposeStatus(1, 2, tt.images); got.Status != tt.want {
			t.Errorf("%v: status %q, want %q", tt.images, got.Status, tt.want)
		}
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(NewComposeStatus(0, 0, nil))
	if !strings.Contains(buf.String(), `"koji_build_id":null`) {
		t.Errorf("missing ids must be null: %s", buf.String())
	}
}
