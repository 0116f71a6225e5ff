package blueprint

import (
	"strings"
	"testing"
)

const goodTOML = `
name = "web"
[[packages]]
name = "nginx"
version = "*"
[customizations]
hostname = "web1.example.org"
[[customizations.user]]
name = "alice"
password = "$6$abc$def"
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm alice@example.org"
groups = ["sudo", "users"]
[customizations.services]
enabled = ["nginx.service"]
[customizations.timezone]
timezone = "Europe/Prague"
[customizations.locale]
languages = ["en_US.UTF-8"]
[customizations.kernel]
append = "console=ttyS0"
[[customizations.files]]
path = "/etc/motd"
data = "hello\n"
mode = "0640"
[customizations.disk]
minsize = "4 GiB"
`

func TestParseTOMLAndJSON(t *testing.T) {
	bp, err := Parse(strings.NewReader(goodTOML))
	if err != nil {
		t.Fatal(err)
	}
	c := bp.Customizations
	if *c.Hostname != "web1.example.org" || c.User[0].Groups[1] != "users" || c.Files[0].FileMode() != 0o640 || c.Timezone.Timezone != "Europe/Prague" {
		t.Fatalf("parsed %+v", c)
	}
	js := `{"packages":[{"name":"vim"}],"customizations":{"hostname":"h","user":[{"name":"bob","keys":["ssh-rsa AAAA bob"]}]}}`
	bp, err = Parse(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if bp.Customizations.User[0].AllKeys()[0] != "ssh-rsa AAAA bob" {
		t.Fatalf("parsed %+v", bp.Customizations.User[0])
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown TOML key", "[customizations]\nhostnme = \"x\"\n", "unknown key customizations.hostnme"},
		{"unknown JSON key", `{"customizations":{"hostnme":"x"}}`, `unknown field "hostnme"`},
		{"hostname", "[customizations]\nhostname = \"-bad-\"\n", "customizations.hostname"},
		{"user name", "[[customizations.user]]\nname = \"Root!\"\n", "customizations.user[0].name"},
		{"plain password", "[[customizations.user]]\nname = \"a\"\npassword = \"hunter2\"\n", "customizations.user[0].password: must be a crypt(3) hash"},
		{"ssh key", "[[customizations.user]]\nname = \"a\"\nkey = \"not a key\"\n", "customizations.user[0].keys[0]"},
		{"file path", "[[customizations.files]]\npath = \"etc/x\"\n", "customizations.files[0].path"},
		{"file in /proc", "[[customizations.files]]\npath = \"/proc/x\"\n", "is not allowed"},
		{"file mode", "[[customizations.files]]\npath = \"/etc/x\"\nmode = \"rw\"\n", "customizations.files[0].mode"},
		{"timezone", "[customizations.timezone]\ntimezone = \"../etc\"\n", "customizations.timezone.timezone"},
		{"package", "[[packages]]\nname = \"Bad Name\"\n", "packages[0].name"},
		{"disk", "[customizations.disk]\nminsize = \"lots\"\n", "customizations.disk.minsize"},
		{"bad TOML", "[customizations\n", "blueprint (TOML)"},
		{"trailing JSON", `{} {}`, "data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"4 GiB", 4 << 30}, {"512M", 512 << 20}, {"1GB", 1e9}, {"1024", 1024}}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "x", "-1G", "99999999999999999999T"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodTOML))
	f.Add([]byte(`{"customizations":{"user":[{"name":"a","uid":5}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bp, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if err := bp.Validate(); err != nil {
			t.Fatalf("Parse accepted a blueprint that does not validate: %v", err)
		}
	})
}
