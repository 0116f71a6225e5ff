package stages

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/debtest"
)

// growTestTree makes a small installed tree: dpkg's status with package
// base, man-db's file trigger on /usr/share/man, a diversion, a stat
// override, /usr/bin/ls, a private /opt/secret and usrmerge's /lib link.
func growTestTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/share/doc", "usr/share/man", "usr/lib", "var/lib/dpkg/triggers", "opt/secret"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "opt/secret"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"var/lib/dpkg/status":        "Package: base\nStatus: install ok installed\nVersion: 1\n\n",
		"var/lib/dpkg/triggers/File": "/usr/share/man man-db\n",
		"var/lib/dpkg/diversions":    "/usr/bin/diverted\n/usr/bin/diverted.real\nbase\n",
		"var/lib/dpkg/statoverride":  "root root 4755 /usr/bin/setuid\n",
		"usr/bin/ls":                 "ls",
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(tree, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(tree, "lib")); err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestGrowBlocker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the tree's directories must be root's, as the packages' are")
	}
	tree := growTestTree(t)
	facts, err := readTreeFacts(tree)
	if err != nil {
		t.Fatal(err)
	}
	plain := map[string]string{"usr/bin/new": "x", "usr/share/doc/new/copyright": "c"}
	for _, tc := range []struct {
		name string
		pkg  debtest.Pkg
		want string // a part of the reason; "" for none
	}{
		{"new files only", debtest.Pkg{Files: plain}, ""},
		{"md5sums", debtest.Pkg{Files: plain, Control: map[string]string{"md5sums": "d41d8cd98f00b204e9800998ecf8427e  usr/bin/new\n"}}, ""},
		{"postinst", debtest.Pkg{Files: plain, Control: map[string]string{"postinst": "#!/bin/sh\n"}}, "control file postinst"},
		{"triggers", debtest.Pkg{Files: plain, Control: map[string]string{"triggers": "activate-noawait ldconfig\n"}}, "control file triggers"},
		{"conffiles", debtest.Pkg{Files: map[string]string{"etc/new.conf": "x"}, Control: map[string]string{"conffiles": "/etc/new.conf\n"}}, "control file conffiles"},
		{"provides", debtest.Pkg{Files: plain, Fields: "Provides: other"}, "declares Provides"},
		{"breaks", debtest.Pkg{Files: plain, Fields: "Breaks: base"}, "declares Breaks"},
		{"essential", debtest.Pkg{Files: plain, Fields: "Essential: yes"}, "Essential"},
		{"file in the tree", debtest.Pkg{Files: map[string]string{"usr/bin/ls": "mine"}}, "/usr/bin/ls is in the tree"},
		{"file trigger", debtest.Pkg{Files: map[string]string{"usr/share/man/man1/new.1": "m"}}, "file trigger"},
		{"diverted", debtest.Pkg{Files: map[string]string{"usr/bin/diverted": "d"}}, "diverted"},
		{"stat override", debtest.Pkg{Files: map[string]string{"usr/bin/setuid": "s"}}, "stat override"},
		{"directory mode", debtest.Pkg{Files: map[string]string{"opt/secret/new": "s"}}, "another owner or mode"},
		{"through a link", debtest.Pkg{Files: map[string]string{"lib/new.so": "s"}}, "/lib is in the tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pkg
			p.Name, p.Version = "new", "1"
			deb := debtest.Build(t, t.TempDir(), p)
			got, added, err := facts.growBlocker(deb)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("growBlocker = %q, want %q", got, tc.want)
			}
			if tc.want != "" && added != nil {
				t.Errorf("a blocked package: added %q", added)
			}
			if tc.want == "" && !slices.Equal(slices.Sorted(slices.Values(added)), []string{"/usr/bin/new", "/usr/share/doc/new", "/usr/share/doc/new/copyright"}) {
				t.Errorf("added = %q, want the paths the tree has not", added)
			}
		})
	}
	deb := debtest.Build(t, t.TempDir(), debtest.Pkg{Name: "base", Version: "2", Files: plain})
	if got, _, _ := facts.growBlocker(deb); !strings.Contains(got, "already names base") {
		t.Errorf("a package the tree has: growBlocker = %q", got)
	}
	bad := filepath.Join(t.TempDir(), "bad.deb")
	if err := os.WriteFile(bad, []byte("!<arch>\nnonsense"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := facts.growBlocker(bad); err == nil {
		t.Error("a damaged package gave no error")
	}
}

func TestGrowBase(t *testing.T) {
	env := &Env{Arch: "amd64", SourceDateEpoch: 1700000000, Seed: 1, BuildRoot: "/store/objects/b/tree"}
	m := &Mmdebstrap{Suite: "bookworm", Packages: []string{"a", "b", "c", "d"}, Debs: []string{"1", "2", "3", "4"}}
	rec := func(fam string, debs, pkgs []string) []byte {
		data, _ := json.Marshal(growRecord{Family: fam, Debs: debs, Packages: pkgs})
		return data
	}
	fam := m.family(env)
	var recs []Record
	env.Records = func(name string) ([]Record, error) {
		if name != growRecordName {
			t.Errorf("records of %q", name)
		}
		return recs, nil
	}
	for _, tc := range []struct {
		name      string
		recs      []Record
		wantTree  string
		wantExtra []string
	}{
		{"none", nil, "", nil},
		{"smaller set", []Record{{"/s/one", rec(fam, []string{"1", "2"}, []string{"a", "b"})}}, "/s/one", []string{"3", "4"}},
		{"the largest smaller set", []Record{
			{"/s/one", rec(fam, []string{"1"}, []string{"a"})},
			{"/s/three", rec(fam, []string{"1", "2", "4"}, []string{"a", "b", "d"})},
			{"/s/two", rec(fam, []string{"1", "2"}, []string{"a", "b"})},
		}, "/s/three", []string{"3"}},
		{"other family", []Record{{"/s/x", rec("other", []string{"1"}, []string{"a"})}}, "", nil},
		{"same set", []Record{{"/s/x", rec(fam, []string{"1", "2", "3", "4"}, []string{"a", "b", "c", "d"})}}, "", nil},
		{"another deb", []Record{{"/s/x", rec(fam, []string{"1", "9"}, []string{"a", "b"})}}, "", nil},
		{"another package", []Record{{"/s/x", rec(fam, []string{"1"}, []string{"z"})}}, "", nil},
		{"damaged record", []Record{{"/s/x", []byte("{")}}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs = tc.recs
			tree, extra, why, err := m.growBase(env)
			if err != nil {
				t.Fatal(err)
			}
			if tree != tc.wantTree || !slices.Equal(extra, tc.wantExtra) {
				t.Errorf("growBase = %q %v (%s), want %q %v", tree, extra, why, tc.wantTree, tc.wantExtra)
			}
			if tree == "" && why == "" {
				t.Error("no base and no reason")
			}
		})
	}
	// More than maxGrow packages more is a new image.
	big := &Mmdebstrap{Suite: "bookworm"}
	for i := range maxGrow + 2 {
		big.Debs = append(big.Debs, string(rune('a'+i)))
		big.Packages = append(big.Packages, string(rune('a'+i)))
	}
	recs = []Record{{"/s/one", rec(big.family(env), big.Debs[:1], big.Packages[:1])}}
	if tree, _, _, _ := big.growBase(env); tree != "" {
		t.Errorf("grew by %d packages", len(big.Debs)-1)
	}
	// The family is everything but the package set.
	for _, change := range []func(e *Env, m *Mmdebstrap){
		func(e *Env, m *Mmdebstrap) { e.Arch = "arm64" },
		func(e *Env, m *Mmdebstrap) { e.SourceDateEpoch++ },
		func(e *Env, m *Mmdebstrap) { e.Seed++ },
		func(e *Env, m *Mmdebstrap) { e.BuildRoot = "/store/objects/c/tree" },
		func(e *Env, m *Mmdebstrap) { m.Suite = "trixie" },
	} {
		e2, m2 := *env, *m
		change(&e2, &m2)
		if m2.family(&e2) == fam {
			t.Errorf("a change of %+v %+v kept the family", e2, m2)
		}
	}
	m2 := *m
	m2.Debs, m2.Packages = []string{"x"}, []string{"y"}
	if m2.family(env) != fam {
		t.Error("the package set changed the family")
	}
	t.Setenv("KIB_GROW", "off")
	recs = []Record{{"/s/one", rec(fam, []string{"1"}, []string{"a"})}}
	if tree, _, why, _ := m.growBase(env); tree != "" || why != "KIB_GROW=off" {
		t.Errorf("KIB_GROW=off: %q %q", tree, why)
	}
}

func TestSettleTree(t *testing.T) {
	tree := t.TempDir()
	const sde = 1700000000
	old, recent := time.Unix(sde-1000, 0), time.Unix(sde+1000, 0)
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "var/lib/dpkg"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "var/lib/dpkg/status-old"), nil, 0o644))
	must(os.WriteFile(filepath.Join(tree, "a/old"), nil, 0o644))
	must(os.Chtimes(filepath.Join(tree, "a/old"), old, old))
	must(os.WriteFile(filepath.Join(tree, "a/b/new"), nil, 0o644))
	must(os.Chtimes(filepath.Join(tree, "a/b/new"), recent, recent))
	must(os.Symlink("old", filepath.Join(tree, "a/link")))
	must(os.Chtimes(filepath.Join(tree, "c"), old, old))
	must(settleTree(tree, sde))
	want := map[string]int64{".": sde, "a": sde, "a/b": sde, "c": sde, "a/old": sde - 1000, "a/b/new": sde, "a/link": sde, "var/lib/dpkg": sde}
	for p, w := range want {
		fi, err := os.Lstat(filepath.Join(tree, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.ModTime().Unix(); got != w {
			t.Errorf("%s: mtime %d, want %d", p, got, w)
		}
	}
	if _, err := os.Lstat(filepath.Join(tree, "var/lib/dpkg/status-old")); !os.IsNotExist(err) {
		t.Errorf("status-old is still there: %v", err)
	}
}

// FuzzGrowBlocker feeds damaged packages to the gate: it answers or errs,
// never panics. A package comes pinned by digest in a manifest, which
// anyone may write.
func FuzzGrowBlocker(f *testing.F) {
	seed := debtest.Build(f, f.TempDir(), debtest.Pkg{Name: "new", Version: "1", Files: map[string]string{"usr/bin/new": "x"}})
	data, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("!<arch>\n"))
	tree := f.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "var/lib/dpkg"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "var/lib/dpkg/status"), []byte("Package: base\n\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	facts, err := readTreeFacts(tree)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, deb []byte) {
		p := filepath.Join(t.TempDir(), "p.deb")
		if err := os.WriteFile(p, deb, 0o644); err != nil {
			t.Fatal(err)
		}
		why, _, err := facts.growBlocker(p)
		if err == nil && why == "" && !bytes.HasPrefix(deb, []byte("!<arch>\n")) {
			t.Errorf("a file that is no ar archive passed the gate")
		}
	})
}
