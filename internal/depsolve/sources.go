package depsolve

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Repo is one apt repository suite.
type Repo struct {
	// URL is the archive root, e.g. http://deb.debian.org/debian.
	URL string `json:"url"`
	// Suite is the suite (bookworm) or, for a flat repository, a path ending
	// in "/" (./).
	Suite string `json:"suite"`
	// Components are the archive areas (main); empty for flat repositories.
	Components []string `json:"components,omitempty"`
	// SignedBy is the keyring that verifies the suite; empty with Trusted.
	SignedBy string `json:"signed_by,omitempty"`
	// Trusted skips signature verification (local test repositories).
	Trusted bool `json:"trusted,omitempty"`
	// Keyring, if set, is the content of the SignedBy keyring as kib ships
	// it (the distro's): apt verifies with it, never with the host's file,
	// while SignedBy stays the path the image's apt sources name.
	Keyring []byte `json:"-"`
}

// Flat reports whether r is a flat repository (no dists/ tree).
func (r Repo) Flat() bool { return strings.HasSuffix(r.Suite, "/") }

// Line returns r as a one-line apt sources entry.
func (r Repo) Line() string {
	var opts []string
	if r.SignedBy != "" {
		opts = append(opts, "signed-by="+r.SignedBy)
	}
	if r.Trusted {
		opts = append(opts, "trusted=yes")
	}
	o := ""
	if len(opts) > 0 {
		o = "[" + strings.Join(opts, " ") + "] "
	}
	s := "deb " + o + r.URL + " " + r.Suite
	if !r.Flat() && len(r.Components) > 0 {
		s += " " + strings.Join(r.Components, " ")
	}
	return s
}

// Validate checks that r names a usable repository.
func (r Repo) Validate() error {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("repository url %q: must be an absolute URL (http, https or file)", r.URL)
	}
	switch u.Scheme {
	case "http", "https", "file":
	default:
		return fmt.Errorf("repository url %q: scheme %q is not supported (http, https, file)", r.URL, u.Scheme)
	}
	if strings.ContainsAny(r.URL, " \t\n[]") {
		return fmt.Errorf("repository url %q: must not contain spaces or brackets", r.URL)
	}
	if r.Suite == "" || strings.ContainsAny(r.Suite, " \t\n[]") {
		return fmt.Errorf("repository %s: suite %q is empty or has spaces", r.URL, r.Suite)
	}
	if !r.Flat() && len(r.Components) == 0 {
		return fmt.Errorf("repository %s %s: components required for a non-flat suite", r.URL, r.Suite)
	}
	for _, c := range r.Components {
		if c == "" || strings.ContainsAny(c, " \t\n[]") {
			return fmt.Errorf("repository %s %s: component %q is empty or has spaces", r.URL, r.Suite, c)
		}
	}
	return nil
}

// SourceEntry is one repository as an apt sources file lists it: a URL with
// the suites and components it serves.
type SourceEntry struct {
	URIs       []string
	Suites     []string
	Components []string
	SignedBy   string
	Trusted    bool
}

// ParseDeb822 parses a deb822 .sources file. Entries of types other than deb
// and disabled entries are skipped.
func ParseDeb822(data []byte) ([]SourceEntry, error) {
	var out []SourceEntry
	for i, para := range paragraphs(data) {
		f, err := fields(para)
		if err != nil {
			return nil, fmt.Errorf("stanza %d: %w", i+1, err)
		}
		if !slices.Contains(strings.Fields(f["types"]), "deb") {
			continue
		}
		if strings.EqualFold(f["enabled"], "no") {
			continue
		}
		e := SourceEntry{
			URIs:       strings.Fields(f["uris"]),
			Suites:     strings.Fields(f["suites"]),
			Components: strings.Fields(f["components"]),
			SignedBy:   strings.TrimSpace(f["signed-by"]),
			Trusted:    strings.EqualFold(f["trusted"], "yes"),
		}
		if len(e.URIs) == 0 || len(e.Suites) == 0 {
			return nil, fmt.Errorf("stanza %d: URIs and Suites are required", i+1)
		}
		if strings.Contains(e.SignedBy, "\n") || strings.HasPrefix(e.SignedBy, "-----") {
			// An embedded key block: apt would verify with it, kib uses the
			// distro's keyring instead.
			e.SignedBy = ""
		}
		out = append(out, e)
	}
	return out, nil
}

func paragraphs(data []byte) [][]string {
	var paras [][]string
	var cur []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				paras = append(paras, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) > 0 {
		paras = append(paras, cur)
	}
	return paras
}

func fields(lines []string) (map[string]string, error) {
	f := map[string]string{}
	last := ""
	for _, l := range lines {
		if l[0] == ' ' || l[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("continuation line %q before any field", l)
			}
			f[last] += "\n" + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("line %q: want 'Field: value'", l)
		}
		last = strings.ToLower(strings.TrimSpace(k))
		f[last] = strings.TrimSpace(v)
	}
	return f, nil
}

// ParseOneLine parses a classic sources.list file.
func ParseOneLine(data []byte) ([]SourceEntry, error) {
	var out []SourceEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, ok, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

func parseLine(line string) (SourceEntry, bool, error) {
	typ, rest, _ := strings.Cut(line, " ")
	if typ != "deb" {
		return SourceEntry{}, false, nil
	}
	rest = strings.TrimSpace(rest)
	var e SourceEntry
	if strings.HasPrefix(rest, "[") {
		opts, after, ok := strings.Cut(rest[1:], "]")
		if !ok {
			return e, false, fmt.Errorf("options: missing ']'")
		}
		for _, o := range strings.Fields(opts) {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "signed-by":
				e.SignedBy = v
			case "trusted":
				e.Trusted = v == "yes"
			}
		}
		rest = after
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return e, false, fmt.Errorf("want 'deb [options] URI suite [component...]'")
	}
	e.URIs = []string{f[0]}
	e.Suites = []string{f[1]}
	e.Components = f[2:]
	return e, true, nil
}

// HostSources reads the apt sources of the machine under root ("/" normally):
// etc/apt/sources.list and etc/apt/sources.list.d/*.list and *.sources.
func HostSources(root string) ([]SourceEntry, error) {
	var out []SourceEntry
	read := func(path string, parse func([]byte) ([]SourceEntry, error)) error {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		es, err := parse(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, es...)
		return nil
	}
	if err := read(filepath.Join(root, "etc/apt/sources.list"), ParseOneLine); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "etc/apt/sources.list.d")
	lists, _ := filepath.Glob(filepath.Join(dir, "*.list"))
	sources, _ := filepath.Glob(filepath.Join(dir, "*.sources"))
	sort.Strings(lists)
	sort.Strings(sources)
	for _, p := range lists {
		if err := read(p, ParseOneLine); err != nil {
			return nil, err
		}
	}
	for _, p := range sources {
		if err := read(p, ParseDeb822); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MirrorFor returns the first URI of entries that serves suite with all of
// components, or "".
func MirrorFor(entries []SourceEntry, suite string, components []string) string {
	for _, e := range entries {
		if !slices.Contains(e.Suites, suite) {
			continue
		}
		ok := true
		for _, c := range components {
			if !slices.Contains(e.Components, c) {
				ok = false
				break
			}
		}
		if ok && len(e.URIs) > 0 {
			return strings.TrimRight(e.URIs[0], "/")
		}
	}
	return ""
}

// ParseRepoFlag parses a --repo value: "URL [SUITE [COMPONENT...]]". Without a
// suite, defSuite is used; without components, defComponents. A suite ending
// in "/" is a flat repository.
func ParseRepoFlag(s, defSuite string, defComponents []string) (Repo, error) {
	var r Repo
	rest := strings.TrimSpace(s)
	if strings.HasPrefix(rest, "[") {
		opts, after, ok := strings.Cut(rest[1:], "]")
		if !ok {
			return Repo{}, fmt.Errorf("--repo %q: options: missing ']'", s)
		}
		for _, o := range strings.Fields(opts) {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "trusted":
				r.Trusted = v == "yes"
			case "signed-by":
				r.SignedBy = v
			default:
				return Repo{}, fmt.Errorf("--repo %q: option %q is not supported (trusted=yes, signed-by=FILE)", s, k)
			}
		}
		rest = after
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return Repo{}, fmt.Errorf("--repo %q: want \"[OPTIONS] URL [SUITE [COMPONENT...]]\"", s)
	}
	r.URL, r.Suite, r.Components = strings.TrimRight(f[0], "/"), defSuite, defComponents
	if len(f) > 1 {
		r.Suite = f[1]
	}
	if len(f) > 2 {
		r.Components = f[2:]
	}
	if r.Flat() {
		r.Components = nil
	}
	if err := r.Validate(); err != nil {
		return Repo{}, fmt.Errorf("--repo %q: %w", s, err)
	}
	return r, nil
}
