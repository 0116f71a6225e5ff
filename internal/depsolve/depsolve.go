// Package depsolve turns a package set and repositories into a pinned package
// list: every package by URL, size and sha256. It runs apt in an isolated
// configuration and never touches the host's apt state.
package depsolve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Package is one pinned package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	URL     string `json:"url"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Filename returns the package's file name in a pool: name_version_arch.deb
// with the epoch colon escaped as apt does.
func (p Package) Filename() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// Request is what to resolve.
type Request struct {
	// Arch is the Debian architecture (amd64).
	Arch  string
	Repos []Repo
	// Packages are package names or apt patterns (?essential).
	Packages []string
}

// Result is a resolved package set.
type Result struct {
	// Packages are sorted by name.
	Packages []Package
	// RepoDate is the newest Date of the repositories' Release files: the
	// state of the archive the packages were resolved against.
	RepoDate time.Time
}

// Solver resolves package sets with apt. The zero value is not usable; set
// CacheDir.
type Solver struct {
	// CacheDir holds apt's isolated state, one directory per set of
	// repositories and architecture, kept between runs so that updates are
	// incremental.
	CacheDir string
	// Log receives apt's progress output; nil discards it.
	Log io.Writer
	// Apt says where apt-get runs: AptHost, AptRoot, or AptAuto (the
	// default): the host's apt-get if it has one, else in a root Roots makes.
	Apt AptMode
	// Roots makes the root apt-get runs in when not the host's.
	Roots RootMaker
}

// AptMode says where the Solver runs apt-get.
type AptMode string

// The places apt-get can run.
const (
	// AptAuto runs the host's apt-get when there is one, else AptRoot.
	AptAuto AptMode = ""
	// AptHost runs the host's apt-get.
	AptHost AptMode = "host"
	// AptRoot runs apt-get in a Debian root kib makes from the repositories
	// (see internal/aptroot), in a mount namespace: the host needs no apt.
	AptRoot AptMode = "root"
)

// ParseAptMode parses an --apt value: auto, host or root.
func ParseAptMode(s string) (AptMode, error) {
	switch s {
	case "auto", "":
		return AptAuto, nil
	case "host":
		return AptHost, nil
	case "root":
		return AptRoot, nil
	}
	return "", fmt.Errorf("apt mode %q: want auto, host or root", s)
}

// RootMaker makes a directory tree holding apt-get for arch from the
// packages of repos.
type RootMaker interface {
	AptRoot(ctx context.Context, repos []Repo, arch string) (string, error)
}

// RootHostFiles are the host's files apt in a root reads at run time (name
// resolution); a root has empty files at these paths that the sandbox binds
// the host's over.
var RootHostFiles = []string{"/etc/resolv.conf", "/etc/hosts"}

// NotFoundError reports packages apt could not find.
type NotFoundError struct{ Names []string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("package not found in the repositories: %s", strings.Join(e.Names, ", "))
}

// UnreachableError reports repositories apt could not read.
type UnreachableError struct {
	Repos  []string
	Detail string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("repository unreachable: %s: %s", strings.Join(e.Repos, ", "), e.Detail)
}

// ConflictError reports a package set apt cannot install together.
type ConflictError struct{ Detail string }

func (e *ConflictError) Error() string { return "packages cannot be installed together: " + e.Detail }

// Solve resolves req.
func (s *Solver) Solve(ctx context.Context, req Request) (*Result, error) {
	if len(req.Repos) == 0 {
		return nil, errors.New("depsolve: no repositories")
	}
	if len(req.Packages) == 0 {
		return nil, errors.New("depsolve: no packages")
	}
	for _, r := range req.Repos {
		if err := r.Validate(); err != nil {
			return nil, err
		}
	}
	inRoot, err := s.useRoot()
	if err != nil {
		return nil, err
	}
	var aptRoot string
	if inRoot {
		if aptRoot, err = s.Roots.AptRoot(ctx, req.Repos, req.Arch); err != nil {
			return nil, err
		}
	}
	root, unlock, err := s.prepare(req, inRoot)
	if err != nil {
		return nil, err
	}
	defer unlock()
	env := []string{"APT_CONFIG=" + filepath.Join(root, "apt.conf"), "LC_ALL=C.UTF-8"}
	apt := func(args ...string) ([]byte, error) {
		c := hostcmd.Cmd{Path: "apt-get", Args: args, Env: env, Log: s.Log}
		if inRoot {
			// apt's state and file: repositories are bound at their own
			// paths, the host's name resolution over the root's stand-ins.
			c.Root, c.Binds, c.HostFiles = aptRoot, []string{root}, RootHostFiles
			for _, r := range req.Repos {
				if p, ok := strings.CutPrefix(r.URL, "file:"); ok {
					c.Binds = append(c.Binds, filepath.Clean("/"+strings.TrimLeft(p, "/")))
				}
			}
		}
		return hostcmd.Run(ctx, c)
	}
	out, err := apt("update")
	if err := updateError(req.Repos, out, err); err != nil {
		return nil, err
	}
	args := []string{"-qq", "-y", "--print-uris", "-o", "Acquire::ForceHash=SHA256", "install", "--"}
	args = append(args, req.Packages...)
	out, err = apt(args...)
	if err != nil {
		return nil, installError(err)
	}
	pkgs, err := ParseURIs(out)
	if err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		return nil, errors.New("depsolve: apt selected no packages")
	}
	date, err := repoDate(filepath.Join(root, "var/lib/apt/lists"))
	if err != nil {
		return nil, err
	}
	return &Result{Packages: pkgs, RepoDate: date}, nil
}

// useRoot decides where apt-get runs.
func (s *Solver) useRoot() (bool, error) {
	mode := s.Apt
	if mode == AptAuto {
		mode = AptHost
		if hostcmd.Check("apt-get") != nil {
			mode = AptRoot
		}
	}
	switch mode {
	case AptHost:
		return false, hostcmd.Check("apt-get")
	case AptRoot:
		if s.Roots == nil {
			return false, errors.New("depsolve: this host has no apt-get, and no apt root maker is set")
		}
		if os.Geteuid() != 0 {
			return false, errors.New("depsolve: this host has no apt-get; kib runs apt in its own root then, which needs root (mount namespaces): run as root or install apt")
		}
		return true, nil
	}
	return false, fmt.Errorf("depsolve: apt mode %q: want host, root or auto", mode)
}

// prepare lays out the isolated apt state for req and locks it. inRoot adds
// what apt in a root without users needs.
func (s *Solver) prepare(req Request, inRoot bool) (string, func(), error) {
	var key bytes.Buffer
	fmt.Fprintf(&key, "arch %s\n", req.Arch)
	lines := make([]string, len(req.Repos))
	for i, r := range req.Repos {
		lines[i] = r.Line()
	}
	for _, l := range lines {
		key.WriteString(l + "\n")
	}
	sum := sha256.Sum256(key.Bytes())
	root := filepath.Join(s.CacheDir, "apt", hex.EncodeToString(sum[:8]))
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
		"etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
		"var/lib/dpkg", "var/log/apt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", nil, fmt.Errorf("depsolve cache: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("depsolve cache: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return "", nil, fmt.Errorf("depsolve cache lock: %w", err)
	}
	unlock := func() { lock.Close() }
	// apt reads the keyrings kib ships from the state directory, not the
	// host's copies; the lines the manifest records keep the repositories'
	// own signed-by paths.
	aptLines := make([]string, len(req.Repos))
	for i, r := range req.Repos {
		if len(r.Keyring) > 0 {
			ks := sha256.Sum256(r.Keyring)
			p := filepath.Join(root, "keyrings", hex.EncodeToString(ks[:8])+".gpg")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				unlock()
				return "", nil, fmt.Errorf("depsolve cache: %w", err)
			}
			if err := os.WriteFile(p, r.Keyring, 0o644); err != nil {
				unlock()
				return "", nil, fmt.Errorf("depsolve cache: %w", err)
			}
			r.SignedBy = p
		}
		aptLines[i] = r.Line()
	}
	sandbox := ""
	if inRoot {
		// No _apt user in a root made without maintainer scripts.
		sandbox = "APT::Sandbox::User \"root\";\n"
	}
	files := map[string]string{
		"var/lib/dpkg/status":  "",
		"etc/apt/sources.list": strings.Join(aptLines, "\n") + "\n",
		"apt.conf": fmt.Sprintf(`Dir "%[1]s/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Etc::main "%[1]s/etc/apt/apt.conf";
Dir::Etc::parts "%[1]s/etc/apt/apt.conf.d";
Dir::Etc::trustedparts "%[1]s/etc/apt/trusted.gpg.d";
Dir::Etc::preferencesparts "%[1]s/etc/apt/preferences.d";
APT::Architecture "%[2]s";
APT::Architectures "%[2]s";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Retries "2";
Debug::NoLocking "true";
`, root, req.Arch) + sandbox,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			unlock()
			return "", nil, fmt.Errorf("depsolve cache: %w", err)
		}
	}
	return root, unlock, nil
}

var (
	errLineRE   = regexp.MustCompile(`(?m)^(?:Err:\d+|E:|W:)\s+(\S+)?.*$`)
	notFoundRE  = regexp.MustCompile(`(?m)^E: (?:Unable to locate package|Couldn't find any package by (?:glob|regex|pattern)) '?([^'\n]+?)'?$`)
	noCandidate = regexp.MustCompile(`(?m)^E: Package '([^']+)' has no installation candidate$`)
)

// updateError turns a failed or partial apt-get update into an
// UnreachableError naming the repositories that failed.
func updateError(repos []Repo, out []byte, runErr error) error {
	text := string(out)
	var he *hostcmd.Error
	if errors.As(runErr, &he) {
		text += "\n" + he.Stderr
	} else if runErr != nil {
		return runErr
	}
	var failed []string
	for _, r := range repos {
		if strings.Contains(text, "Err:") && errLinesMention(text, r) {
			failed = append(failed, r.URL+" "+r.Suite)
		}
	}
	if len(failed) == 0 && (runErr != nil || strings.Contains(text, "Failed to fetch") || strings.Contains(text, "Some index files failed")) {
		for _, r := range repos {
			failed = append(failed, r.URL+" "+r.Suite)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	var detail []string
	for _, m := range errLineRE.FindAllString(text, -1) {
		detail = append(detail, strings.TrimSpace(m))
	}
	if len(detail) > 6 {
		detail = detail[:6]
	}
	if runErr != nil && errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return &UnreachableError{Repos: failed, Detail: strings.Join(detail, "; ")}
}

func errLinesMention(text string, r Repo) bool {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Err:") && strings.Contains(l, r.URL) && strings.Contains(l, strings.TrimSuffix(r.Suite, "/")) {
			return true
		}
	}
	return false
}

func installError(err error) error {
	var he *hostcmd.Error
	if !errors.As(err, &he) {
		return err
	}
	var names []string
	for _, m := range notFoundRE.FindAllStringSubmatch(he.Stderr, -1) {
		names = append(names, m[1])
	}
	for _, m := range noCandidate.FindAllStringSubmatch(he.Stderr, -1) {
		names = append(names, m[1])
	}
	if len(names) > 0 {
		return &NotFoundError{Names: names}
	}
	if strings.Contains(he.Stderr, "Unable to correct problems") || strings.Contains(he.Stderr, "unmet dependencies") {
		return &ConflictError{Detail: strings.TrimSpace(he.Stderr)}
	}
	return fmt.Errorf("depsolve: %w", err)
}

// ParseURIs parses apt-get --print-uris output: 'URL' file size SHA256:hex.
// The result is sorted by name.
func ParseURIs(out []byte) ([]Package, error) {
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "'") {
			continue
		}
		p, err := parseURILine(line)
		if err != nil {
			return nil, fmt.Errorf("apt output line %d: %w", n, err)
		}
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Arch < pkgs[j].Arch
	})
	return pkgs, nil
}

func parseURILine(line string) (Package, error) {
	end := strings.Index(line[1:], "'")
	if end < 0 {
		return Package{}, fmt.Errorf("%q: unterminated URL quote", line)
	}
	u := line[1 : end+1]
	f := strings.Fields(line[end+2:])
	if len(f) != 3 {
		return Package{}, fmt.Errorf("%q: want 'URL' file size SHA256:hex", line)
	}
	if _, err := url.Parse(u); err != nil {
		return Package{}, fmt.Errorf("%q: bad URL: %w", line, err)
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || size <= 0 {
		return Package{}, fmt.Errorf("%q: bad size %q", line, f[1])
	}
	algo, sum, _ := strings.Cut(f[2], ":")
	if algo != "SHA256" || len(sum) != 64 {
		return Package{}, fmt.Errorf("%q: want a SHA256 checksum, got %q", line, f[2])
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return Package{}, fmt.Errorf("%q: bad SHA256 %q", line, sum)
	}
	name, version, arch, err := splitDebName(f[0])
	if err != nil {
		return Package{}, fmt.Errorf("%q: %w", line, err)
	}
	return Package{Name: name, Version: version, Arch: arch, URL: u, Size: size, SHA256: strings.ToLower(sum)}, nil
}

// splitDebName splits name_version_arch.deb, unescaping the epoch.
func splitDebName(file string) (name, version, arch string, err error) {
	base, ok := strings.CutSuffix(file, ".deb")
	if !ok {
		return "", "", "", fmt.Errorf("file %q is not a .deb", file)
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("file %q is not name_version_arch.deb", file)
	}
	v, err := url.PathUnescape(parts[1])
	if err != nil {
		return "", "", "", fmt.Errorf("file %q: bad version escape: %w", file, err)
	}
	return parts[0], v, parts[2], nil
}

// repoDate returns the newest Date field of the Release files in lists.
func repoDate(lists string) (time.Time, error) {
	var newest time.Time
	files, _ := filepath.Glob(filepath.Join(lists, "*Release"))
	for _, f := range files {
		if strings.HasSuffix(f, ".gpg") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return time.Time{}, err
		}
		if t, ok := releaseDate(data); ok && t.After(newest) {
			newest = t
		}
	}
	if newest.IsZero() {
		return time.Time{}, fmt.Errorf("depsolve: no Release file with a Date field in %s", lists)
	}
	return newest, nil
}

func releaseDate(data []byte) (time.Time, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "Date:"); ok {
			t, err := time.Parse(time.RFC1123, strings.TrimSpace(v))
			if err != nil {
				t, err = time.Parse(time.RFC1123Z, strings.TrimSpace(v))
			}
			if err == nil {
				return t.UTC(), true
			}
			return time.Time{}, false
		}
		if strings.HasPrefix(l, "-----BEGIN PGP SIGNATURE") {
			break
		}
	}
	return time.Time{}, false
}
