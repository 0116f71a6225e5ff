// Package aptroot makes the small Debian root apt-get runs in on a host
// without apt (a Fedora Koji builder): it reads a repository's Release and
// Packages indices in Go (verified with the distro's keyring), resolves apt's
// dependency closure, fetches those .debs by sha256 into the store, unpacks
// them with kib's own deb reader and keeps the tree in the store, keyed by
// the debs' digests, for the next run.
package aptroot

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kib-project/kib/internal/debindex"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/store"
)

// Packages are what the root holds, with their dependencies: apt-get and
// what it runs (gpgv, through apt's dependencies), and dpkg, which apt
// consults about the system.
var Packages = []string{"apt", "dpkg"}

// Bootstrapper makes apt roots. The zero value is not usable: set StoreDir.
type Bootstrapper struct {
	// StoreDir is the store the debs and the root are kept in; it is opened
	// on first use.
	StoreDir string
	// Client fetches indices and debs; nil means a client with a 10 minute
	// timeout.
	Client *http.Client
	// Log receives progress; nil discards it.
	Log *slog.Logger

	once  sync.Once
	st    *store.Store
	stErr error
}

// AptRoot returns a directory tree holding apt-get for arch, made from
// repos' packages (the first repository that has apt is used).
func (b *Bootstrapper) AptRoot(ctx context.Context, repos []depsolve.Repo, arch string) (string, error) {
	b.once.Do(func() { b.st, b.stErr = store.Open(b.StoreDir) })
	if b.stErr != nil {
		return "", fmt.Errorf("apt root: %w", b.stErr)
	}
	log := b.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	var all []debindex.Package
	var bases []string
	for _, r := range repos {
		pkgs, err := b.index(ctx, r, arch)
		if err != nil {
			return "", fmt.Errorf("apt root: %s %s: %w", r.URL, r.Suite, err)
		}
		for i := range pkgs {
			// Filename is relative to the repository root (or, flat, to
			// the suite's directory); keep the full URL.
			pkgs[i].Filename = joinURL(repoBase(r), pkgs[i].Filename)
		}
		all = append(all, pkgs...)
		bases = append(bases, r.URL)
	}
	pkgs, err := debindex.NewIndex(arch, all).Closure(Packages)
	if err != nil {
		return "", fmt.Errorf("apt root: resolving %s in %s: %w", strings.Join(Packages, ", "), strings.Join(bases, ", "), err)
	}
	key := sha256.New()
	fmt.Fprintf(key, "kib apt root 1\narch %s\n", arch)
	for _, p := range pkgs {
		fmt.Fprintf(key, "%s %s\n", p.SHA256, p.Name)
	}
	k := hex.EncodeToString(key.Sum(nil))
	if b.st.HasObject(k) {
		return filepath.Join(b.st.ObjectPath(k), "tree"), nil
	}
	log.Info("bootstrapping the apt root (no apt-get on this host)", "packages", len(pkgs))
	srcs := map[string]string{}
	unpack := stages.DebsUnpack{}
	for _, p := range pkgs {
		p := p
		src, _, err := b.st.Source(ctx, p.SHA256, p.Size, 3, func(ctx context.Context, w io.Writer) error {
			return b.get(ctx, p.Filename, w)
		})
		if err != nil {
			return "", fmt.Errorf("apt root: fetching %s %s: %w", p.Name, p.Version, err)
		}
		srcs[p.SHA256] = src
		unpack.Debs = append(unpack.Debs, p.SHA256)
	}
	dir, _, err := b.st.Object(ctx, k, func(ctx context.Context, dir string) error {
		tree := filepath.Join(dir, "tree")
		if err := os.Mkdir(tree, 0o755); err != nil {
			return err
		}
		if err := unpack.Run(ctx, &stages.Env{Tree: tree, Sources: srcs, Arch: arch, Log: log}); err != nil {
			return err
		}
		for _, f := range depsolve.RootHostFiles {
			if err := os.WriteFile(filepath.Join(tree, f), nil, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("apt root: %w", err)
	}
	log.Info("apt root ready", "packages", len(pkgs), "duration", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "tree"), nil
}

// repoBase is the URL Filename fields are relative to.
func repoBase(r depsolve.Repo) string {
	if r.Flat() {
		return joinURL(r.URL, r.Suite)
	}
	return r.URL
}

func joinURL(base, rel string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimPrefix(path.Clean("/"+rel), "/")
}

// index returns the packages of r for arch, from indices verified against
// the Release file, itself verified with r's keyring unless r is trusted.
func (b *Bootstrapper) index(ctx context.Context, r depsolve.Repo, arch string) ([]debindex.Package, error) {
	dist := joinURL(r.URL, "dists/"+r.Suite)
	if r.Flat() {
		dist = repoBase(r)
	}
	rel, err := b.release(ctx, r, dist)
	if err != nil {
		return nil, err
	}
	var dirs []string
	if r.Flat() {
		dirs = []string{""}
	} else {
		for _, c := range r.Components {
			dirs = append(dirs, c+"/binary-"+arch+"/")
		}
	}
	var out []debindex.Package
	for _, d := range dirs {
		name, sum, ok := pickIndex(rel, d+"Packages")
		if !ok {
			return nil, fmt.Errorf("the Release file lists no %sPackages index", d)
		}
		var buf bytes.Buffer
		if err := b.get(ctx, joinURL(dist, name), &buf); err != nil {
			return nil, err
		}
		got := sha256.Sum256(buf.Bytes())
		if hex.EncodeToString(got[:]) != sum.SHA256 || int64(buf.Len()) != sum.Size {
			return nil, fmt.Errorf("%s: does not match the Release file's size and sha256", name)
		}
		rd, err := decompress(name, &buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		pkgs, err := debindex.ParsePackages(rd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, pkgs...)
	}
	return out, nil
}

// pickIndex chooses the compressed form of base the Release lists, as apt
// prefers them.
func pickIndex(rel *debindex.Release, base string) (string, debindex.FileSum, bool) {
	for _, ext := range []string{".xz", ".zst", ".gz", ""} {
		if s, ok := rel.Files[base+ext]; ok {
			return base + ext, s, true
		}
	}
	return "", debindex.FileSum{}, false
}

func decompress(name string, r io.Reader) (io.Reader, error) {
	switch path.Ext(name) {
	case ".xz":
		return xz.NewReader(r)
	case ".gz":
		return gzip.NewReader(r)
	case ".zst":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}
	return r, nil
}

// release fetches and verifies dist's InRelease (or Release and
// Release.gpg).
func (b *Bootstrapper) release(ctx context.Context, r depsolve.Repo, dist string) (*debindex.Release, error) {
	var in bytes.Buffer
	inErr := b.get(ctx, joinURL(dist, "InRelease"), &in)
	if r.Trusted {
		if inErr == nil {
			if text, err := debindex.PlainInRelease(in.Bytes()); err == nil {
				return debindex.ParseRelease(text)
			}
		}
		var rel bytes.Buffer
		if err := b.get(ctx, joinURL(dist, "Release"), &rel); err != nil {
			return nil, err
		}
		return debindex.ParseRelease(rel.Bytes())
	}
	kr, err := keyring(r)
	if err != nil {
		return nil, err
	}
	if inErr == nil {
		text, err := debindex.VerifyInRelease(kr, in.Bytes())
		if err != nil {
			return nil, err
		}
		return debindex.ParseRelease(text)
	}
	var rel, sig bytes.Buffer
	if err := b.get(ctx, joinURL(dist, "Release"), &rel); err != nil {
		return nil, fmt.Errorf("no InRelease (%v) and no Release: %w", inErr, err)
	}
	if err := b.get(ctx, joinURL(dist, "Release.gpg"), &sig); err != nil {
		return nil, err
	}
	if err := debindex.VerifyDetached(kr, rel.Bytes(), sig.Bytes()); err != nil {
		return nil, err
	}
	return debindex.ParseRelease(rel.Bytes())
}

// keyring reads r's keyring: the one kib ships, else the signed-by file.
func keyring(r depsolve.Repo) (*debindex.Keyring, error) {
	data := r.Keyring
	if len(data) == 0 {
		if r.SignedBy == "" {
			return nil, errors.New("the repository is neither trusted nor signed-by a keyring")
		}
		var err error
		if data, err = os.ReadFile(r.SignedBy); err != nil {
			return nil, fmt.Errorf("signed-by: %w", err)
		}
	}
	return debindex.ReadKeyring(data)
}

// get writes the content at u (http, https or file) to w.
func (b *Bootstrapper) get(ctx context.Context, u string, w io.Writer) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	if pu.Scheme == "file" {
		f, err := os.Open(pu.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	c := b.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Minute}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
