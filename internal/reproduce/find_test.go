package reproduce

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/kojiimport"
	"github.com/kib-project/kib/internal/manifest"
)

// exportDir writes an export directory as the local build does, with a
// real manifest from testdata.
func exportDir(t *testing.T, root, export, file, imageType, kibVersion string, image []byte) string {
	t.Helper()
	dir := filepath.Join(root, export)
	os.MkdirAll(dir, 0o755)
	mf, err := os.ReadFile("../manifest/testdata/tar.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, file), image, 0o644)
	os.WriteFile(filepath.Join(dir, file+".manifest.json"), mf, 0o644)
	sum, msum := sha256.Sum256(image), sha256.Sum256(mf)
	bi, _ := json.Marshal(map[string]any{"arch": "x86_64", "boot_mode": "none", "export_name": export, "export_filename": file,
		"kib_version": kibVersion, "sha256": hex.EncodeToString(sum[:]), "size": len(image), "distro": "debian-12",
		"image_type": imageType, "packages": []any{}, "manifest_sha256": hex.EncodeToString(msum[:])})
	os.WriteFile(filepath.Join(dir, "build-info.json"), bi, 0o644)
	return dir
}

type fixture struct {
	hub    *kojitest.Hub
	client *koji.Client
}

// importBuild imports a build of a tar and a qcow2 image into a fresh hub.
func importBuild(t *testing.T, kibVersion string) fixture {
	t.Helper()
	ctx := context.Background()
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	c, err := hub.Connector("kib", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var imgs []*kojiimport.Image
	for _, d := range []string{
		exportDir(t, root, "archive", "root.tar.xz", "tar", kibVersion, []byte("tar bytes")),
		exportDir(t, root, "qcow2", "disk.qcow2", "qcow2", kibVersion, []byte("qcow2 bytes")),
	} {
		img, err := kojiimport.ReadImage(d)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	im := &kojiimport.Importer{Client: c, CG: "kib"}
	if _, err := im.Import(ctx, kojiimport.Build{NVR: koji.NVR{Name: "debian", Version: "12", Release: "1"},
		Start: time.Unix(1700000000, 0), End: time.Unix(1700000100, 0), Images: imgs}); err != nil {
		t.Fatal(err)
	}
	anon, err := koji.New(hub.URL, koji.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{hub: hub, client: anon}
}

func TestBuildRef(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want any
		err  string
	}{
		{"42", int64(42), ""},
		{"debian-12-1", "debian-12-1", ""},
		{"my-image-12-20261122.1", "my-image-12-20261122.1", ""},
		{"0", nil, "must be positive"},
		{"debian", nil, "not a build ID and not an NVR"},
		{"debian--1", nil, "not a build ID and not an NVR"},
		{"", nil, "give an NVR"},
	} {
		got, err := BuildRef(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("BuildRef(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("BuildRef(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	ctx := context.Background()
	f := importBuild(t, "0.1.0-dev")
	for _, tt := range []struct {
		build, image string
		want, err    string
	}{
		{"debian-12-1", "", "", "has 2 images, choose one with --image: debian-12-1.x86_64.tar.xz, debian-12-1.x86_64.qcow2"},
		{"debian-12-1", "qcow2", "debian-12-1.x86_64.qcow2", ""},
		{"1", "root.tar.xz", "debian-12-1.x86_64.tar.xz", ""},
		{"1", "debian-12-1.x86_64.tar.xz", "debian-12-1.x86_64.tar.xz", ""},
		{"1", "vhd", "", `--image "vhd": build debian-12-1 has no such image`},
		{"debian-12-2", "", "", "build debian-12-2: "},
		{"7", "", "", "build 7: "},
	} {
		t.Run(tt.build+"/"+tt.image, func(t *testing.T) {
			got, err := Find(ctx, f.client, tt.build, tt.image)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Image.Filename != tt.want || got.Manifest.Filename != tt.want+".manifest.json" {
				t.Errorf("got image %s, manifest %s; want %s", got.Image.Filename, got.Manifest.Filename, tt.want)
			}
		})
	}
}

func TestDownloadChecksRecord(t *testing.T) {
	ctx := context.Background()
	f := importBuild(t, "0.1.0-dev")
	tgt, err := Find(ctx, f.client, "debian-12-1", "archive")
	if err != nil {
		t.Fatal(err)
	}
	if got := ArchivePath(tgt.Build, tgt.Image); got != "packages/debian/12/1/images/debian-12-1.x86_64.tar.xz" {
		t.Errorf("ArchivePath = %s", got)
	}
	var buf bytes.Buffer
	if err := download(ctx, http.DefaultClient, f.hub.TopURL(), ArchivePath(tgt.Build, tgt.Manifest), tgt.Manifest, &buf, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Parse(&buf); err != nil {
		t.Errorf("downloaded manifest: %v", err)
	}
	// The served file is changed behind the record's back.
	other := filepath.Join(t.TempDir(), "x")
	os.WriteFile(other, []byte("TAR BYTES"), 0o644)
	if err := f.hub.ReplaceArchive(int(tgt.Build.ID), tgt.Image.Filename, other, true); err != nil {
		t.Fatal(err)
	}
	err = download(ctx, http.DefaultClient, f.hub.TopURL(), ArchivePath(tgt.Build, tgt.Image), tgt.Image, &buf, nil)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Want != tgt.Image.Checksum {
		t.Errorf("err = %v, want a ChecksumError with the record's checksum", err)
	}
	if err := download(ctx, http.DefaultClient, "ftp://x", "a", tgt.Image, &buf, nil); err == nil || !strings.Contains(err.Error(), "topurl") {
		t.Errorf("ftp topurl: err = %v", err)
	}
}

func TestCheckVersion(t *testing.T) {
	ctx := context.Background()
	f := importBuild(t, "0.0.9")
	tgt, err := Find(ctx, f.client, "debian-12-1", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := buildMetadata(ctx, http.DefaultClient, f.hub.TopURL(), tgt.Build)
	if err != nil || meta == nil {
		t.Fatalf("metadata.json: %v, %v", meta, err)
	}
	if v, src := BuiltBy(tgt, meta, nil); v != "0.0.9" || !strings.Contains(src, "buildroot") {
		t.Errorf("BuiltBy = %q from %q, want 0.0.9 from the buildroot", v, src)
	}
	if err := CheckVersion(tgt, meta, nil, "0.0.9"); err != nil {
		t.Errorf("same version: %v", err)
	}
	err = CheckVersion(tgt, meta, nil, "0.2.0")
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Build != "0.0.9" || ve.Running != "0.2.0" || !strings.Contains(err.Error(), "--force") {
		t.Errorf("other version: %v", err)
	}
	// Without metadata.json, the archive's osbuild_version (the importing
	// kib's) is the fallback.
	if v, _ := BuiltBy(tgt, nil, nil); v == "" {
		t.Error("no fallback version from the archive")
	}
	if err := CheckVersion(&Target{}, nil, nil, "0.2.0"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("no version anywhere: %v", err)
	}
}
