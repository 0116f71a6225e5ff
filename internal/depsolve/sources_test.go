package depsolve

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const deb822 = `Types: deb
# a comment
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Enabled: yes
`

func TestParseDeb822(t *testing.T) {
	es, err := ParseDeb822([]byte(deb822))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("got %d entries, want 2 (deb-src skipped): %+v", len(es), es)
	}
	if got := MirrorFor(es, "bookworm-updates", []string{"main"}); got != "http://deb.debian.org/debian" {
		t.Errorf("MirrorFor(bookworm-updates) = %q", got)
	}
	if got := MirrorFor(es, "bookworm-security", []string{"main"}); got != "http://deb.debian.org/debian-security" {
		t.Errorf("MirrorFor(bookworm-security) = %q", got)
	}
	if got := MirrorFor(es, "trixie", []string{"main"}); got != "" {
		t.Errorf("MirrorFor(trixie) = %q, want none", got)
	}
	if _, err := ParseDeb822([]byte("Types: deb\nno colon here\n")); err == nil {
		t.Error("accepted a line without a colon")
	}
}

func TestParseOneLine(t *testing.T) {
	es, err := ParseOneLine([]byte("# comment\ndeb [signed-by=/k.gpg arch=amd64] http://m/debian bookworm main contrib\ndeb-src http://m/debian bookworm main\ndeb [trusted=yes] file:///r ./\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []SourceEntry{
		{URIs: []string{"http://m/debian"}, Suites: []string{"bookworm"}, Components: []string{"main", "contrib"}, SignedBy: "/k.gpg"},
		{URIs: []string{"file:///r"}, Suites: []string{"./"}, Components: []string{}, Trusted: true},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("got %+v\nwant %+v", es, want)
	}
}

func TestHostSources(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etc/apt/sources.list.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "debian.sources"), []byte(deb822), 0o644)
	os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte("deb http://other/debian bookworm main\n"), 0o644)
	es, err := HostSources(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].URIs[0] != "http://other/debian" {
		t.Fatalf("got %+v, want sources.list first, then the .sources entries", es)
	}
}

func TestParseRepoFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "http://m/debian", want: "deb http://m/debian bookworm main"},
		{in: "http://m/debian/ trixie main contrib", want: "deb http://m/debian trixie main contrib"},
		// A file: repository is verified like any other unless the user
		// says trusted=yes: the scheme earns no trust.
		{in: "file:///srv/repo ./", want: "deb file:///srv/repo ./"},
		{in: "[trusted=yes] file:///srv/repo ./", want: "deb [trusted=yes] file:///srv/repo ./"},
		{in: "[signed-by=/k.gpg] https://m/debian", want: "deb [signed-by=/k.gpg] https://m/debian bookworm main"},
		{in: "", wantErr: "want"},
		{in: "ftp://m/debian", wantErr: "scheme"},
		{in: "[arch=amd64] http://m/debian", wantErr: "not supported"},
		{in: "not a url", wantErr: "absolute URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRepoFlag(tt.in, "bookworm", []string{"main"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Line(); got != tt.want {
				t.Errorf("Line() = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseDeb822(f *testing.F) {
	f.Add([]byte(deb822))
	f.Add([]byte("Types: deb\nURIs: x\n Suites: y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseDeb822(data)
		if err != nil {
			return
		}
		for _, e := range es {
			if len(e.URIs) == 0 || len(e.Suites) == 0 {
				t.Fatalf("accepted an entry without URIs or Suites: %+v", e)
			}
		}
	})
}

func FuzzParseRepoFlag(f *testing.F) {
	f.Add("http://m/debian bookworm main")
	f.Add("[trusted=yes] file:///r ./")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRepoFlag(s, "bookworm", []string{"main"})
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRepoFlag(%q) returned an invalid repo: %v", s, err)
		}
	})
}
