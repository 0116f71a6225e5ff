package distro

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmbedded(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Get("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if d.Codename != "bookworm" || len(d.Repositories) != 3 {
		t.Fatalf("debian-12 = %+v", d)
	}
	for _, typ := range []string{"tar", "container"} {
		if _, err := d.ImageType(typ); err != nil {
			t.Error(err)
		}
		if len(d.Packages(typ)) == 0 {
			t.Errorf("%s has no packages", typ)
		}
	}
	if a, _ := d.DebArch("x86_64"); a != "amd64" {
		t.Errorf("DebArch(x86_64) = %q", a)
	}
	// The archive keyring ships with kib: an OpenPGP public key packet.
	if len(d.KeyringData) < 1000 || d.KeyringData[0]&0x80 == 0 {
		t.Errorf("debian-12's keyring_file: %d bytes", len(d.KeyringData))
	}
}

func TestUnknownNamesListValid(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get("fedora-99")
	if err == nil || !strings.Contains(err.Error(), `unknown distro "fedora-99" (valid: debian-12`) {
		t.Errorf("Get: %v", err)
	}
	d, _ := c.Get("debian-12")
	if _, err := d.DebArch("sparc"); err == nil || !strings.Contains(err.Error(), "valid: x86_64") {
		t.Errorf("DebArch: %v", err)
	}
	if _, err := d.ImageType("iso"); err == nil || !strings.Contains(err.Error(), "valid: ") || !strings.Contains(err.Error(), "tar") {
		t.Errorf("ImageType: %v", err)
	}
}

func TestOverrideDirectory(t *testing.T) {
	data, err := os.ReadFile("../../distros/debian-12.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	changed := strings.Replace(string(data), "hostname: localhost", "hostname: overridden", 1)
	os.WriteFile(filepath.Join(dir, "debian-12.yaml"), []byte(changed), 0o644)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := c.Get("debian-12")
	if d.Defaults.Hostname != "overridden" {
		t.Errorf("hostname = %q, want the override's", d.Defaults.Hostname)
	}
	if len(d.KeyringData) == 0 {
		t.Error("an override without keyrings/ lost kib's keyring")
	}
	bad := strings.Replace(string(data), "keyring_file: keyrings/debian-archive-keyring.gpg", "keyring_file: keyrings/none.gpg", 1)
	bdir := t.TempDir()
	os.WriteFile(filepath.Join(bdir, "debian-12.yaml"), []byte(bad), 0o644)
	if _, err := Load(bdir); err == nil || !strings.Contains(err.Error(), "keyring_file keyrings/none.gpg") {
		t.Errorf("Load with a missing keyring_file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "other.yaml"), data, 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `must match the file name "other"`) {
		t.Errorf("Load with a misnamed file: %v", err)
	}
}

func TestValidate(t *testing.T) {
	data, err := os.ReadFile("../../distros/debian-12.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, from, to, want string }{
		{"unknown key", "codename: bookworm", "codename: bookworm\ncolour: red", "field colour not found"},
		{"recipe", "recipe: tar", "recipe: iso", "image_types.tar.recipe"},
		{"boot mode", "boot_mode: none", "boot_mode: bios", "boot_mode"},
		{"package set", "package_sets: [base]", "package_sets: [nope]", `"nope" is not defined`},
		{"level", "level: 2", "level: 12", "compression.level"},
		{"os", "os: debian", "os: plan9", `os: "plan9"`},
		{"keyring file", "keyring_file: keyrings/", "keyring_file: ../", "keyring_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(string(data), tt.from, tt.to, 1)
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("../../distros/debian-12.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("name: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid definition: %v", err)
		}
	})
}
