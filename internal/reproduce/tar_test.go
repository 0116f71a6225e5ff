package reproduce

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

type entry struct {
	name, body string
	mode       int64
	xattr      string
}

func makeTar(t testing.TB, compress string, entries ...entry) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if e.xattr != "" {
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": e.xattr}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	switch compress {
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		w.Close()
	case "gz":
		w := gzip.NewWriter(&out)
		w.Write(raw.Bytes())
		w.Close()
	default:
		return raw.Bytes()
	}
	return out.Bytes()
}

func TestCompareTar(t *testing.T) {
	base := []entry{{name: "./"}, {name: "./etc/"}, {name: "./etc/hostname", body: "kib\n"}, {name: "./etc/motd", body: strings.Repeat("m", 1<<20+100)}}
	with := func(f func(e []entry) []entry) []entry {
		c := append([]entry(nil), base...)
		return f(c)
	}
	bigChanged := strings.Repeat("m", 1<<20+95) + "Mmmmm"
	tests := []struct {
		name       string
		other      []entry
		wantEntry  string
		wantDetail string
	}{
		{"identical", base, "", ""},
		{"content", with(func(e []entry) []entry { e[2].body = "kub\n"; return e }), "./etc/hostname", "content differs from byte 1"},
		{"content past the first MiB", with(func(e []entry) []entry { e[3].body = bigChanged; return e }), "./etc/motd", "content differs from byte 1048671"},
		{"mode", with(func(e []entry) []entry { e[2].mode = 0o600; return e }), "./etc/hostname", "mode 0644 in Koji, 0600 reproduced"},
		{"size", with(func(e []entry) []entry { e[2].body = "kib2\n"; return e }), "./etc/hostname", "size 4 in Koji, 5 reproduced"},
		{"xattr", with(func(e []entry) []entry { e[2].xattr = "cap"; return e }), "./etc/hostname", "pax record SCHILY.xattr.security.capability"},
		{"extra entry", append(append([]entry(nil), base...), entry{name: "./root/.cache/", body: ""}), "./root/.cache/", "only in the reproduced image"},
		{"missing entry", base[:3], "./etc/motd", "only in the Koji image"},
		{"other name", with(func(e []entry) []entry { e[2].name = "./etc/hosts"; return e }), "./etc/hostname", `the reproduced image has "./etc/hosts" here`},
	}
	for _, tt := range tests {
		for _, comp := range []string{"", "xz", "gz"} {
			t.Run(tt.name+"/"+comp, func(t *testing.T) {
				a := makeTar(t, comp, base...)
				b := makeTar(t, comp, tt.other...)
				d, err := CompareTar(bytes.NewReader(a), bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if tt.wantEntry == "" {
					if d != nil {
						t.Fatalf("got difference %v, want none", d)
					}
					return
				}
				if d == nil {
					t.Fatalf("no difference, want %s: %s", tt.wantEntry, tt.wantDetail)
				}
				if d.Entry != tt.wantEntry || !strings.Contains(d.Detail, tt.wantDetail) {
					t.Errorf("got %q: %q, want %q: ...%q...", d.Entry, d.Detail, tt.wantEntry, tt.wantDetail)
				}
			})
		}
	}
}

func TestCompareTarBadInput(t *testing.T) {
	good := makeTar(t, "xz", entry{name: "./a", body: "a"})
	for _, tt := range []struct {
		name string
		a, b []byte
		want string
	}{
		{"truncated koji xz", good[:len(good)/2], good, "koji image"},
		{"garbage reproduced", good, bytes.Repeat([]byte{0x42}, 1024), "reproduced image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompareTar(bytes.NewReader(tt.a), bytes.NewReader(tt.b))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming the %s", err, tt.want)
			}
		})
	}
}

func FuzzCompareTar(f *testing.F) {
	f.Add(makeTar(f, "", entry{name: "./a", body: "a"}), makeTar(f, "", entry{name: "./a", body: "b"}))
	f.Add(makeTar(f, "gz", entry{name: "./a/"}), makeTar(f, "xz", entry{name: "./a", body: "b"}))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d, err := CompareTar(bytes.NewReader(a), bytes.NewReader(b))
		if err == nil && d != nil {
			_ = d.String()
		}
		if bytes.Equal(a, b) && err == nil && d != nil {
			t.Fatalf("equal inputs differ: %v", d)
		}
	})
}
