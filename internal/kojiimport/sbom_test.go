package kojiimport

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSBOMsBesideAPathWithGlobCharacters(t *testing.T) {
	for _, name := range []string{"plain", "with [brackets]", "star*and?"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			image := filepath.Join(dir, "disk.qcow2")
			for _, f := range []string{"disk.qcow2", "disk.qcow2.image-os.spdx.json", "disk.qcow2.buildroot.spdx.json", "other.qcow2.x.spdx.json", "disk.qcow2.manifest.json"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := sbomsBeside(image)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{filepath.Join(dir, "disk.qcow2.buildroot.spdx.json"), filepath.Join(dir, "disk.qcow2.image-os.spdx.json")}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("SBOMs = %q, want %q", got, want)
			}
		})
	}
	if _, err := sbomsBeside(filepath.Join(t.TempDir(), "gone", "disk.qcow2")); err == nil {
		t.Error("an unreadable directory was not an error")
	}
}
