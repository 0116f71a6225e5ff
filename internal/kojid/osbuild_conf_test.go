package kojid

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseBuilderConf(t *testing.T) {
	conf, err := ParseBuilderConf(strings.NewReader(`# as koji-osbuild ships it
[composer]
server = https://composer.example.org
ssl_cert = /etc/koji-osbuild/builder-crt.pem, /etc/koji-osbuild/builder-key.pem
ssl_verify = /etc/koji-osbuild/ca-crt.pem
proxy = http://proxy.example.org:3128

[composer:oauth]
client_id = kojid
client_secret = s3cret
token_url = https://sso.example.org/token

[koji]
server = https://koji.example.org/kojihub
`))
	if err != nil {
		t.Fatal(err)
	}
	c := conf.Composer
	if c.Server != "https://composer.example.org" || c.CertFile != "/etc/koji-osbuild/builder-crt.pem" || c.KeyFile != "/etc/koji-osbuild/builder-key.pem" ||
		c.CAFile != "/etc/koji-osbuild/ca-crt.pem" || c.Insecure || c.Proxy != "http://proxy.example.org:3128" ||
		c.OAuth == nil || c.OAuth.ClientID != "kojid" || c.OAuth.TokenURL != "https://sso.example.org/token" || conf.KojiServer != "https://koji.example.org/kojihub" {
		t.Errorf("conf = %+v, oauth %+v", conf, c.OAuth)
	}
	def, err := ParseBuilderConf(strings.NewReader("[composer]\nssl_verify = False\n"))
	if err != nil || def.Composer.Server != "https://localhost" || def.KojiServer != "https://localhost/kojihub" || !def.Composer.Insecure {
		t.Errorf("defaults: %+v %v", def, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"[composr]\n", "unknown section [composr]"},
		{"[composer]\nsevrer = x\n", `unknown key "sevrer" in [composer]`},
		{"[composer]\nssl_cert = a, b, c\n", "invalid cert string"},
		{"[composer:oauth]\nclient_id = x\n", "[composer:oauth] client_secret: required"},
		{"server = x\n", "key outside a section"},
		{"[composer\n", "no closing ]"},
		{"[koji]\njust words\n", "want key = value"},
	} {
		if _, err := ParseBuilderConf(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseBuilderConf(f *testing.F) {
	f.Add("[composer]\nserver = https://c\nssl_cert = a, b\n[composer:oauth]\nclient_id=a\nclient_secret=b\ntoken_url=c\n[koji]\nserver: k\n  continued\n")
	f.Fuzz(func(t *testing.T, in string) {
		conf, err := ParseBuilderConf(strings.NewReader(in))
		if err == nil && conf == nil {
			t.Fatal("nil conf without error")
		}
	})
}

func FuzzOSBuildArgs(f *testing.F) {
	f.Add("name", "1", "debian-12", "tar", "target", "x86_64", "http://r/$arch", "debian/$arch/${arch}/$$")
	f.Fuzz(func(t *testing.T, name, version, distro, typ, target, arch, repo, ref string) {
		params := []any{name, version, distro, []any{typ}, target, []any{arch}, map[string]any{"repo": []any{repo, map[string]any{"baseurl": repo}}, "ostree": map[string]any{"ref": ref}}}
		a, err := parseOSBuildArgs(params, nil)
		if err == nil && (a.name != name || a.imageType != typ || len(a.arches) != 1) {
			t.Fatalf("parsed %+v from %v", a, params)
		}
		if s, err := substArch(ref, arch); err == nil && strings.Contains(ref, "$arch") && !strings.Contains(ref, "$$") && arch != "" && !strings.Contains(s, arch) {
			t.Fatalf("substArch(%q, %q) = %q", ref, arch, s)
		}
	})
}

func FuzzComposeStatus(f *testing.F) {
	f.Add([]byte(`{"status":"failure","image_statuses":[{"status":"failure","error":{"id":10,"reason":"r","details":"d"}}],"koji_status":{"build_id":42}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var st composeStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return
		}
		_ = statusFile(&st, raw, 7)
		_ = composeErrors(&st, nil)
		_ = imagesDone(&st)
	})
}

func TestSubstArch(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"http://r/$arch/os", "http://r/x86_64/os", ""},
		{"${arch}-$$", "x86_64-$", ""},
		{"$basearch", "", "only $arch"},
		{"$archive", "", "only $arch"},
	} {
		got, err := substArch(tc.in, "x86_64")
		if (err != nil) != (tc.err != "") || got != tc.want || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("substArch(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}
