// Package debindex reads a Debian repository's indices in Go: the Release
// file (verified against an OpenPGP keyring), the Packages index, and the
// dependency closure of a package set. kib uses it to bootstrap the small
// root apt-get runs in on hosts without apt.
package debindex

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// FileSum is one index file a Release lists: its size and sha256.
type FileSum struct {
	Size   int64
	SHA256 string
}

// Release is a repository's Release file.
type Release struct {
	Suite, Codename string
	// Date is when the archive was published; zero if absent.
	Date time.Time
	// Files are the index files by path relative to the Release file's
	// directory (main/binary-amd64/Packages.xz).
	Files map[string]FileSum
}

// ParseRelease parses the (already verified, unsigned) text of a Release
// file.
func ParseRelease(data []byte) (*Release, error) {
	paras, err := parseControl(data, 1)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if len(paras) == 0 {
		return nil, fmt.Errorf("release: empty")
	}
	f := paras[0]
	r := &Release{Suite: f.get("Suite"), Codename: f.get("Codename"), Files: map[string]FileSum{}}
	if d := f.get("Date"); d != "" {
		t, err := time.Parse(time.RFC1123, d)
		if err != nil {
			t, err = time.Parse(time.RFC1123Z, d)
		}
		if err != nil {
			return nil, fmt.Errorf("release: Date %q: not an RFC 1123 date", d)
		}
		r.Date = t.UTC()
	}
	for i, line := range strings.Split(f.get("SHA256"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 3 {
			return nil, fmt.Errorf("release: SHA256 line %d %q: want 'sum size path'", i, line)
		}
		size, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("release: SHA256 line %d: bad size %q", i, fs[1])
		}
		if !isSHA256(fs[0]) {
			return nil, fmt.Errorf("release: SHA256 line %d: %q is not a sha256 hex digest", i, fs[0])
		}
		r.Files[fs[2]] = FileSum{Size: size, SHA256: strings.ToLower(fs[0])}
	}
	if len(r.Files) == 0 {
		return nil, fmt.Errorf("release: no SHA256 file list")
	}
	return r, nil
}

// Package is one stanza of a Packages index.
type Package struct {
	Name, Version, Arch string
	// Filename is the .deb's path relative to the repository root.
	Filename   string
	Size       int64
	SHA256     string
	Depends    [][]Dep
	PreDepends [][]Dep
	// Provides are the virtual packages (with optional versions) it provides.
	Provides []Dep
	// Essential is set for packages every Debian system has (Essential: yes).
	Essential bool
}

// Dep is one alternative of a dependency: a name with an optional version
// relation (Op is "", "<<", "<=", "=", ">=" or ">>").
type Dep struct {
	Name, Op, Version string
	// Arch is a :any or :native qualifier, kept as written.
	Arch string
}

// ParsePackages parses a Packages index. Stanzas without a Filename or with a
// bad field are errors naming the package and the field.
func ParsePackages(r io.Reader) ([]Package, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return nil, err
	}
	paras, err := parseControl(data, 0)
	if err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	out := make([]Package, 0, len(paras))
	for i, f := range paras {
		p := Package{Name: f.get("Package"), Version: f.get("Version"), Arch: f.get("Architecture"), Filename: f.get("Filename"),
			Essential: strings.EqualFold(f.get("Essential"), "yes")}
		where := fmt.Sprintf("packages: stanza %d (%s)", i+1, p.Name)
		if p.Name == "" || p.Version == "" || p.Arch == "" || p.Filename == "" {
			return nil, fmt.Errorf("%s: Package, Version, Architecture and Filename are required", where)
		}
		if err := checkVersion(p.Version); err != nil {
			return nil, fmt.Errorf("%s: Version: %w", where, err)
		}
		if p.Size, err = strconv.ParseInt(f.get("Size"), 10, 64); err != nil || p.Size <= 0 {
			return nil, fmt.Errorf("%s: Size %q: want a positive integer", where, f.get("Size"))
		}
		if p.SHA256 = strings.ToLower(f.get("SHA256")); !isSHA256(p.SHA256) {
			return nil, fmt.Errorf("%s: SHA256 %q: want a sha256 hex digest", where, f.get("SHA256"))
		}
		if p.Depends, err = ParseDepends(f.get("Depends")); err != nil {
			return nil, fmt.Errorf("%s: Depends: %w", where, err)
		}
		if p.PreDepends, err = ParseDepends(f.get("Pre-Depends")); err != nil {
			return nil, fmt.Errorf("%s: Pre-Depends: %w", where, err)
		}
		prov, err := ParseDepends(f.get("Provides"))
		if err != nil {
			return nil, fmt.Errorf("%s: Provides: %w", where, err)
		}
		for _, alts := range prov {
			if len(alts) != 1 || (alts[0].Op != "" && alts[0].Op != "=") {
				return nil, fmt.Errorf("%s: Provides: want 'name' or 'name (= version)' entries", where)
			}
			p.Provides = append(p.Provides, alts[0])
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseDepends parses a relationship field: comma-separated groups of
// '|'-separated alternatives, each "name[:arch] [(op version)] [<profiles>]".
func ParseDepends(s string) ([][]Dep, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out [][]Dep
	for _, group := range strings.Split(s, ",") {
		var alts []Dep
		for _, a := range strings.Split(group, "|") {
			d, err := parseDep(strings.TrimSpace(a))
			if err != nil {
				return nil, err
			}
			alts = append(alts, d)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseDep(s string) (Dep, error) {
	// Build profiles and architecture restrictions only appear in source
	// packages' fields; a binary index has none.
	if strings.ContainsAny(s, "[<") && !strings.Contains(s, "(") {
		return Dep{}, fmt.Errorf("%q: architecture or profile restrictions are not valid in a binary package", s)
	}
	name, rest, _ := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	var d Dep
	d.Name, d.Arch, _ = strings.Cut(name, ":")
	if d.Name == "" || strings.ContainsAny(d.Name, " \t\n()|,") {
		return Dep{}, fmt.Errorf("%q: bad package name", s)
	}
	if rest == "" {
		if strings.Contains(s, ")") {
			return Dep{}, fmt.Errorf("%q: unbalanced parenthesis", s)
		}
		return d, nil
	}
	rel, tail, ok := strings.Cut(rest, ")")
	if !ok || strings.TrimSpace(tail) != "" {
		return Dep{}, fmt.Errorf("%q: want 'name (op version)'", s)
	}
	rel = strings.TrimSpace(rel)
	for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
		if v, ok := strings.CutPrefix(rel, op); ok {
			d.Op, d.Version = op, strings.TrimSpace(v)
			break
		}
	}
	switch d.Op {
	case "<":
		d.Op = "<="
	case ">":
		d.Op = ">="
	case "":
		return Dep{}, fmt.Errorf("%q: relation %q has no operator", s, rel)
	}
	if err := checkVersion(d.Version); err != nil {
		return Dep{}, fmt.Errorf("%q: %w", s, err)
	}
	return d, nil
}

// control is one paragraph of a deb822 control file: fields by name as
// written, with continuation lines joined by "\n".
type control struct{ keys, vals []string }

func (c control) get(k string) string {
	for i, kk := range c.keys {
		if strings.EqualFold(kk, k) {
			return c.vals[i]
		}
	}
	return ""
}

// parseControl splits data into paragraphs; max > 0 stops after that many.
func parseControl(data []byte, max int) ([]control, error) {
	var out []control
	var cur control
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	n := 0
	flush := func() {
		if len(cur.keys) > 0 {
			out = append(out, cur)
			cur = control{}
		}
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			flush()
			if max > 0 && len(out) >= max {
				return out, nil
			}
			continue
		}
		if line[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(cur.keys) == 0 {
				return nil, fmt.Errorf("line %d: continuation line before any field", n)
			}
			cur.vals[len(cur.vals)-1] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: want 'Field: value'", n)
		}
		cur.keys = append(cur.keys, k)
		cur.vals = append(cur.vals, strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	return out, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
